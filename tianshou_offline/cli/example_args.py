"""One typed argument definition for the example scripts (``examples/atari``, ``examples/mujoco``).

In the style of CORL's ``TrainConfig`` and CleanRL's ``Args``: an experiment's settings are
dataclasses whose fields are the command-line flags, each with a docstring (its ``--help``
text). The run's flags live here (:class:`ExampleConfig`, and the two dialects
:class:`AtariConfig` and :class:`MujocoConfig`); the algorithm's flags are generated from the
fields of its ``*Config`` (:mod:`tianshou_offline.algorithms`), with the defaults of the
dialect's preset (``mujoco``, ``atari``). A script names its algorithm and adds only flags of
its own::

    @dataclass(kw_only=True)
    class TD3BCFlags(MujocoConfig):
        algorithm: ClassVar[str] = "td3bc"

    config = parse_config(TD3BCFlags, argv, description=__doc__)
    algorithm = config.build_algorithm(env.observation_space, env.action_space)

The flags are Tianshou's: every ``snake_case`` field is accepted as ``--snake-case`` and
``--snake_case``; :func:`arg` adds aliases (``--step-per-epoch``/``--epoch-num-steps``), and
:data:`FLAG_ALIASES` gives algorithm fields the names the examples used before
(``--norm-obs`` for ``normalize_obs``, ``--n-step`` for ``n_step_return_horizon``).
Unknown flags and abbreviations are errors (exit code 2), unlike Tianshou's
``parse_known_args``. Types come from the annotations: ``int``, ``float``, ``str``,
``X | None`` (default None), ``list[X]`` and ``tuple[X, ...]`` (any number of values),
``Literal[...]`` (choices), ``bool`` (a switch, default False; an algorithm's ``bool``
settings take ``0``/``1`` as in Tianshou's examples).

:func:`run_example` is the scripts' ``__main__`` guard (one ``error:`` line, exit code 2) and
:func:`training_progress` their one progress policy (tqdm on a terminal, plain lines
otherwise).
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import inspect
import os
import sys
import textwrap
import time
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TextIO, TypeVar, overload

from tianshou_offline.errors import TianshouOfflineError

if TYPE_CHECKING:
    import gymnasium as gym
    import torch
    from tianshou.algorithm.algorithm_base import OfflineAlgorithm
    from tianshou.utils import BaseLogger

    from tianshou_offline.algorithms.config import ActionKind, AlgorithmConfig

T = TypeVar("T")
C = TypeVar("C", bound="ExampleConfig")

MUJOCO_DEFAULT_THREADS = 1
"""Torch threads of the MuJoCo examples: their networks (two 256-wide layers, batches of 256)
are small, and on a shared machine one thread is never much slower and often many times
faster than several; ``tianshou-offline record --threads`` makes the same choice for batch-1
inference."""

FLAG_ALIASES: dict[str, tuple[str, ...]] = {
    "normalize_obs": ("norm-obs",),
    "n_step_return_horizon": ("n-step",),
    "critic_layer_norm": ("critic-ln",),
    "deterministic_actor": ("deterministic",),
    "num_sampled_actions": ("num-sampled-action", "num-action-samples"),
    "policy_num_sampled_actions": ("num-candidate-actions",),
    "target_update_freq": ("target-update-interval",),
    "lr": ("actor-lr",),
    "learn_alpha": ("auto-alpha",),
    "init_alpha": ("alpha",),
}
"""Algorithm fields → the flag names the examples (and Tianshou's) used for them, listed
first in ``--help``; a name that is also a field of the algorithm is not an alias there."""

ALGORITHM_DEST = "algorithm."
"""The argparse ``dest`` prefix of the algorithm's flags."""

PLAIN_PROGRESS_INTERVAL_S = 30.0
"""Seconds between plain progress lines when stderr is not a terminal."""


# --------------------------------------------------------------------------- defining flags


@overload
def arg(default: T, *, aliases: Sequence[str] = ()) -> T: ...
@overload
def arg(*, factory: Callable[[], T], aliases: Sequence[str] = ()) -> T: ...
def arg(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    aliases: Sequence[str] = (),
) -> Any:
    """A config field with more than a plain default.

    :param default: the default (a list default is ``field(default_factory=lambda: [...])``,
        as for any dataclass).
    :param factory: computes the default instead, when the parser is built (e.g. from an
        environment variable or the hardware).
    :param aliases: more flag names, dash-spelled (``"epoch-num-steps"``); each is also
        accepted with underscores.
    """
    metadata = {"aliases": tuple(aliases)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def default_device() -> str:
    """``cuda`` where torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_data_dir() -> str:
    """``$TIANSHOU_OFFLINE_DATA``, else ``~/.cache/tianshou_offline``."""
    return os.environ.get("TIANSHOU_OFFLINE_DATA", str(Path.home() / ".cache" / "tianshou_offline"))


@dataclass(kw_only=True)
class ExampleConfig:
    """The flags every example script takes; a subclass that names an :attr:`algorithm`
    takes that algorithm's flags too (its config, at :attr:`preset`, is :attr:`algo`)."""

    algorithm: ClassVar[str | None] = None
    """The registry name of the script's algorithm (``tianshou_offline.algorithms``)."""
    action_kind: ClassVar[ActionKind] = "continuous"
    """The kind of actions the dialect's algorithms learn."""
    preset: ClassVar[str | None] = None
    """The preset whose settings are the algorithm flags' defaults."""

    algo: AlgorithmConfig | None = field(default=None, init=False)
    """The algorithm's config, from its flags (set by :func:`parse_config`)."""

    seed: int = 0
    """seed of numpy, torch and the test environments"""
    epoch: int = 100
    """training epochs (each ends with an evaluation)"""
    batch_size: int = 256
    """transitions per gradient step (default: the preset's for the algorithm)"""
    test_num: int = arg(10, aliases=("num-test-envs",))
    """evaluation episodes per test (one environment each)"""
    logdir: str = "log"
    """where each run writes its logs and checkpoints (in logdir/task/algorithm/seed/time)"""
    log_interval: int = 100
    """gradient steps between logged training statistics"""
    render: float = 0.0
    """seconds between rendered frames when evaluating (0: no window)"""
    device: str = arg(factory=default_device)
    """torch device (cuda when available)"""
    threads: int | None = None
    """torch CPU threads (default: torch's choice, one per core)"""
    resume_path: str | None = None
    """a checkpoint to start from"""
    resume: bool = False
    """continue this script's latest run for --task and --seed (the newest
    logdir/TASK/ALGO/SEED/TIME/ with a training checkpoint) exactly where it stopped, as
    --resume-path with its checkpoint does; without one the run starts as it would without
    --resume (from --resume-path, if given): a job can always pass it"""
    watch: bool = False
    """only evaluate the checkpoint in --resume-path, no training"""
    logger: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    """where training statistics go: TensorBoard event files in the run's directory, a
    Weights & Biases run (pip install 'tianshou-offline[wandb]'; WANDB_MODE=offline writes it
    into the run's directory), or nowhere"""
    wandb_project: str = "tianshou-offline"
    """W&B project (--logger wandb)"""
    wandb_name: str | None = None
    """W&B run name (--logger wandb; default: TASK__ALGO__SEED__TIME, the run's directory)"""
    wandb_group: str | None = None
    """W&B group (--logger wandb; default: TASK__ALGO, every seed of the run's settings)"""
    resume_id: str | None = None
    """W&B run id to continue (--logger wandb; default: one derived from the run's directory,
    so a resumed run continues its W&B run)"""
    show_progress: Literal[0, 1] = 1
    """1: a progress bar on a terminal, a plain progress line every 30 s otherwise (log
    files); 0: neither"""

    def algorithm_config(self) -> AlgorithmConfig:
        """The algorithm's config (:attr:`algo`).

        :raises TypeError: a config class without an algorithm, or one not parsed.
        """
        if self.algo is None:
            raise TypeError(f"{type(self).__name__}: no algorithm config (use parse_config)")
        return self.algo

    def build_algorithm(
        self, observation_space: gym.Space[Any], action_space: gym.Space[Any]
    ) -> OfflineAlgorithm[Any]:
        """The algorithm of these flags for data with these spaces, on ``--device``."""
        device: str | torch.device = self.device
        return self.algorithm_config().build(observation_space, action_space, device=device)

    def check(self) -> None:
        """Reject flag combinations that cannot work (a :class:`ValueError` becomes an
        argparse error: usage, one ``error:`` line, exit code 2)."""
        if self.watch and not self.resume_path:
            raise ValueError("--watch needs --resume-path")
        for name in ("epoch", "batch_size", "test_num", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError("--threads must be at least 1")
        if not self.watch:
            output_dir(self.logdir, "--logdir")


def output_dir(path: str, flag: str) -> None:
    """A directory an example creates (with its parents) must be creatable: checked with the
    arguments, before any data is loaded (:func:`tianshou_offline.cli._run.check_output`).

    :raises ValueError: it is a file, or its nearest existing folder is not writable.
    """
    from tianshou_offline.cli._run import check_output

    try:
        check_output(Path(path).expanduser(), flag=flag, overwrite=None, directory=True,
                     parents=True)  # fmt: skip
    except TianshouOfflineError as e:
        raise ValueError(str(e)) from None


@dataclass(kw_only=True)
class AtariConfig(ExampleConfig):
    """The flags of Tianshou's ``examples/offline/atari_*.py`` (defaults as there)."""

    action_kind: ClassVar[ActionKind] = "discrete"
    preset: ClassVar[str | None] = "atari"

    task: str = "PongNoFrameskip-v4"
    """ale-py env id"""
    seed: int = 1626
    eps_test: float = 0.001
    """ε-greedy noise when evaluating"""
    update_per_epoch: int = arg(10000, aliases=("epoch-num-steps", "step-per-epoch"))
    """gradient steps per epoch"""
    frames_stack: int = 4
    """frames per observation"""
    resume_path: str | None = None
    """a checkpoint to start from (last.pth: continues the run in its directory exactly;
    policy.pth: the algorithm's weights)"""
    wandb_project: str = "offline_atari.benchmark"
    """W&B project (--logger wandb)"""
    watch: bool = False
    """only evaluate the policy in --resume-path"""
    load_buffer_name: list[str] = field(
        default_factory=lambda: ["./expert_DQN_PongNoFrameskip-v4.hdf5"]
    )
    """the offline data: a tianshou-offline HDF5 file, a Tianshou save_hdf5 file (read
    without unpickling), or RL Unplugged output (see --buffer-from-rl-unplugged); several
    files or directories of compact shards are joined into one buffer"""
    buffer_from_rl_unplugged: bool = False
    """--load-buffer-name is the RL Unplugged converter's output: files, directories of shard
    files, or globs; shards are joined into one buffer with exact stacks"""
    memory: Literal["ram", "disk", "auto"] = "auto"
    """where the frames stay: ram (read into memory), disk (memory-mapped from contiguous
    files, see `tianshou-offline repack`; mini-batches are gathered from disk), auto (disk
    when they exceed half of the available memory)"""
    allow_pickle: bool = False
    """allow unpickling (.pkl buffers, pickled columns of Tianshou files): runs code from the
    file, only for files you trust"""
    max_episode_steps: int | None = None
    """time limit of evaluation episodes in agent steps (default: the game's own)"""

    def check(self) -> None:
        super().check()
        if self.update_per_epoch < 1 or self.frames_stack < 1:
            raise ValueError("--update-per-epoch and --frames-stack must be at least 1")
        if not self.load_buffer_name:
            raise ValueError("--load-buffer-name needs at least one file or directory")


@dataclass(kw_only=True)
class MujocoConfig(ExampleConfig):
    """The flags of Tianshou's ``examples/offline/d4rl_*.py``, plus where the data comes from."""

    preset: ClassVar[str | None] = "mujoco"

    task: str | None = None
    """gymnasium env id (default: the one stored with the data; HalfCheetah-v5 for the
    default data)"""
    expert_data_task: str = "halfcheetah-expert-v2"
    """the data: a buffer file, a D4RL name (halfcheetah-expert-v2) or a Minari id
    (mujoco/halfcheetah/expert-v0)"""
    data_dir: str = arg(factory=default_data_dir)
    """where D4RL and Minari datasets are cached after conversion (default:
    $TIANSHOU_OFFLINE_DATA or ~/.cache/tianshou_offline)"""
    buffer_size: int | None = None
    """use at most this many transitions (default: all)"""
    epoch: int = 200
    step_per_epoch: int = arg(5000, aliases=("epoch-num-steps",))
    """gradient steps per epoch"""
    subproc_envs: bool = False
    """evaluate in subprocesses"""
    render: float = 0.0
    """render the final evaluation episode with this delay between frames (s)"""
    threads: int | None = MUJOCO_DEFAULT_THREADS
    """torch CPU threads. The default, 1, suits these small networks (on a shared machine
    more threads are often slower); raise it on idle cores, for wide networks or large
    batches"""
    resume_path: str | None = None
    """a checkpoint to start from (last.pt: algorithm and optimizers, continues the run's
    log; policy.pt: the policy's weights)"""

    def check(self) -> None:
        super().check()
        if self.step_per_epoch < 1:
            raise ValueError("--step-per-epoch must be at least 1")
        if self.buffer_size is not None and self.buffer_size < 1:
            raise ValueError("--buffer-size must be at least 1")
        if not Path(self.expert_data_task).exists():  # a name: converted into --data-dir
            output_dir(self.data_dir, "--data-dir")


def warn_unused_flags(config: ExampleConfig, names: Sequence[str], why: str) -> None:
    """A ``DeprecationWarning`` for each of ``names`` (fields of ``config`` that default to
    None) given on the command line: flags an earlier release of the script accepted
    without using them, kept for one release.

    :param why: what the script does instead, e.g. ``"the Decision Transformer has no
        critic"``.
    """
    for name in names:
        if getattr(config, name) is not None:
            flag = "--" + name.replace("_", "-")
            warnings.warn(f"{flag} is not used ({why}) and will be removed in the next release",
                          DeprecationWarning, stacklevel=3)  # fmt: skip


# --------------------------------------------------------------------------- parsing


def parse_config(
    cls: type[C], argv: Sequence[str] | None = None, *, prog: str | None = None, description: str
) -> C:
    """Parse ``argv`` (default: ``sys.argv[1:]``) into a ``cls`` config (with its
    algorithm's config in :attr:`ExampleConfig.algo` when ``cls`` names one).

    Unknown flags, abbreviations, bad values and :meth:`ExampleConfig.check` failures print
    the usage and one ``error:`` line, and exit with code 2.
    """
    parser = make_parser(cls, prog=prog, description=description)
    values = vars(parser.parse_args(argv))
    algo_values = {
        k[len(ALGORITHM_DEST) :]: values.pop(k)
        for k in list(values)
        if k.startswith(ALGORITHM_DEST)
    }
    config = cls(**values)
    try:
        base = _algorithm_defaults(cls)
        if base is not None:
            hints = base.field_types()
            if "batch_size" in hints:  # one --batch-size: the trainer's and the algorithm's
                algo_values["batch_size"] = config.batch_size
            config.algo = base.replace(
                **{k: bool(v) if hints[k] is bool else v for k, v in algo_values.items()}
            )
        config.check()
    except (ValueError, TianshouOfflineError) as e:
        parser.error(str(e))
    return config


def _algorithm_defaults(cls: type[ExampleConfig]) -> AlgorithmConfig | None:
    """The config of ``cls``'s algorithm at its preset (None: the class names none)."""
    if cls.algorithm is None:
        return None
    from tianshou_offline.algorithms.registry import make_config

    return make_config(cls.algorithm, cls.action_kind, preset=cls.preset)


def make_parser(
    cls: type[ExampleConfig], *, prog: str | None = None, description: str
) -> argparse.ArgumentParser:
    """The argparse parser of a config class (one option per field, and one per field of its
    algorithm's config)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        allow_abbrev=False,
        formatter_class=_HelpFormatter,
        epilog="Every --flag-name is also accepted as --flag_name.",
    )
    base = _algorithm_defaults(cls)
    # the names imported for type checking only stand in for themselves
    hints = typing.get_type_hints(cls, localns={"ActionKind": str, "AlgorithmConfig": object})
    docs = field_docs(cls)
    taken = {f.name for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = _default(f)
        if f.name == "batch_size" and base is not None and cls.preset is not None:
            from tianshou_offline.algorithms.presets import preset

            default = preset(cls.preset).batch_size_of(base.name, base.action_kind)
        _add(parser, _flag_names(f.name, f.metadata.get("aliases", ())), f.name,
             _argparse_kwargs(f.name, hints[f.name]), default, docs.get(f.name, ""))  # fmt: skip
    if base is not None:
        algo_docs = field_docs(type(base))
        fields = set(base.field_names())
        for name, hint in base.field_types().items():
            if name == "batch_size":  # the script's --batch-size sets it (LB-SAC's lr rule)
                continue
            aliases = [a for a in FLAG_ALIASES.get(name, ()) if a.replace("-", "_") not in fields]
            if name in taken or any(a.replace("-", "_") in taken for a in aliases):
                raise TypeError(f"{cls.__name__}: flag {name!r} is also an algorithm setting")
            dashed = name.replace("_", "-")
            names = _flag_names(aliases[0], (*aliases[1:], dashed)) if aliases else None
            names = names or _flag_names(name, ())
            value = getattr(base, name)
            default = list(value) if isinstance(value, tuple) else value
            kwargs = _argparse_kwargs(name, hint, bool_as_int=True)
            if "choices" not in kwargs:
                kwargs["metavar"] = name.upper()
            if hint is bool:
                default = int(value)
            _add(parser, names, ALGORITHM_DEST + name, kwargs, default, algo_docs.get(name, ""))
    return parser


def _add(
    parser: argparse.ArgumentParser,
    names: list[str],
    dest: str,
    kwargs: dict[str, Any],
    default: Any,
    doc: str,
) -> None:
    help_text = " ".join(doc.split())
    if default is not None and default is not False and not _states_default(help_text):
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        help_text = f"{help_text} (default: {shown})".strip()
    parser.add_argument(
        *names, dest=dest, default=default, help=help_text.replace("%", "%%"), **kwargs
    )


def _states_default(help_text: str) -> bool:
    """Whether a flag's help already says its default (``(default: all)``, ``The default,
    1, ...``): then no ``(default: ...)`` is appended."""
    return "(default" in help_text or "the default" in help_text.lower()


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks (its example commands) and lists each flag in its
    dash spelling only (the underscore spellings are accepted, not repeated)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = [o for o in action.option_strings if "_" not in o]
        if not shown or shown == action.option_strings:
            return super()._format_action_invocation(action)
        listed = copy.copy(action)
        listed.option_strings = shown
        return super()._format_action_invocation(listed)


def _flag_names(name: str, aliases: Sequence[str]) -> list[str]:
    names: list[str] = []
    for base in (name.replace("_", "-"), *aliases):
        for spelled in (base, base.replace("-", "_")):
            flag = f"--{spelled}"
            if flag not in names:
                names.append(flag)
    return names


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"config field {f.name!r} needs a default")


def _argparse_kwargs(name: str, hint: Any, *, bool_as_int: bool = False) -> dict[str, Any]:
    """``type``/``nargs``/``choices``/``action`` for an annotation (``bool_as_int``: a
    ``bool`` takes ``0``/``1``, as an algorithm's switches in Tianshou's examples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"config field {name!r}: unsupported union {hint}")
        return _argparse_kwargs(name, inner[0], bool_as_int=bool_as_int)
    if hint is bool:
        return {"type": int, "choices": [0, 1]} if bool_as_int else {"action": "store_true"}
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return {**_argparse_kwargs(name, args[0]), "nargs": "*"}
    if origin is tuple and args and all(a is args[0] for a in args):
        return {**_argparse_kwargs(name, args[0]), "nargs": len(args)}
    if origin is Literal:
        kinds = {type(a) for a in args}
        if len(kinds) != 1:
            raise TypeError(f"config field {name!r}: mixed Literal types {hint}")
        return {"type": kinds.pop(), "choices": list(args)}
    if hint in (int, float, str):
        return {"type": hint}
    raise TypeError(f"config field {name!r}: unsupported type {hint}")


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under dataclass fields (``x: int = 1`` then ``\"\"\"...\"\"\"``),
    of ``cls`` and its bases; a subclass's docstring replaces its base's."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # no source (e.g. defined in an interactive session)
            continue
        node = ast.parse(source).body[0]
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt, nxt in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def config_dict(config: ExampleConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict (``args.json``, TensorBoard's text, wandb's config)."""
    return dataclasses.asdict(config)


def write_args(config: ExampleConfig, log_path: str | os.PathLike[str]) -> Path:
    """Write the run's flags to ``log_path/args.json``, all or nothing (a temporary renamed
    into place; a resumed run replaces its own file).

    :raises OutputWriteError: the file cannot be written (full disk, write error, read-only
        or vanished directory); no temporary is left.
    """
    import json

    from tianshou_offline.data.atomic import atomic_output

    path = Path(log_path) / "args.json"
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(config_dict(config), indent=2))
    return path


def example_logger(
    config: ExampleConfig, log_path: str | os.PathLike[str], *, task: str, algo_name: str
) -> BaseLogger | None:
    """The run's logger (``--logger``) writing into ``log_path`` (``logdir/TASK/ALGO/SEED/TIME``):
    TensorBoard with the flags as text; a W&B run named after that directory, grouped by task
    and algorithm, with the flags as its config; or None.

    :raises MissingDependencyError: ``--logger wandb`` without the wandb package.
    """
    from tianshou_offline.loggers import WandbSettings, make_logger

    settings = config_dict(config)
    wandb = None
    if config.logger == "wandb":
        wandb = WandbSettings(
            project=config.wandb_project,
            name=config.wandb_name or "__".join(Path(log_path).parts[-4:]).replace("/", "_"),
            group=config.wandb_group or f"{task}__{algo_name}".replace("/", "_"),
            run_id=config.resume_id,
            config=settings,
        )
    return make_logger(config.logger, log_path, update_interval=config.log_interval,
                       wandb=wandb, text={"args": str(settings)})  # fmt: skip


# --------------------------------------------------------------------------- running


def run_example(main: Callable[[Sequence[str] | None], object]) -> None:
    """An example's ``__main__`` guard: run ``main(None)`` (flags from ``sys.argv``); a data or
    environment problem (a :class:`~tianshou_offline.errors.TianshouOfflineError`, a
    gymnasium error) prints one ``error: ...`` line to stderr and exits with code 2, no
    traceback; Ctrl-C exits with 130."""
    import gymnasium

    try:
        main(None)
    except (TianshouOfflineError, gymnasium.error.Error) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if e.filename is None:  # not about a path: a bug, keep its traceback
            raise
        from tianshou_offline.cli._run import file_error

        print(f"error: {file_error(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, TianshouOfflineError):
        return text
    return f"{type(e).__name__}: {text}"  # a gymnasium error: its type says what went wrong


def training_progress(
    logger: BaseLogger | None,
    *,
    enabled: bool,
    total_steps: int,
    desc: str,
    stream: TextIO | None = None,
    interval_s: float = PLAIN_PROGRESS_INTERVAL_S,
) -> tuple[BaseLogger | None, bool]:
    """The examples' one progress policy for Tianshou's trainer.

    On a terminal, Tianshou's tqdm bar; otherwise (a log file, a pipe) a plain line every
    ``interval_s`` seconds and one per epoch, with no cursor escapes: the trainer's logger
    is wrapped to print them.

    :param logger: the run's logger (None: Tianshou's ``LazyLogger``).
    :param enabled: ``--show-progress``; False: neither bar nor lines.
    :param total_steps: gradient steps of the whole run (epochs × steps per epoch).
    :param desc: what is training, e.g. ``"td3_bc on Hopper-v5"``.
    :param stream: where lines go (default: stderr).
    :returns: the logger to hand the trainer and its ``show_progress`` setting.
    """
    out = stream if stream is not None else sys.stderr
    if not enabled:
        return logger, False
    if _isatty(out):
        return logger, True
    return _plain_progress_logger(logger, total_steps, desc, out, interval_s), False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _plain_progress_logger(
    inner: BaseLogger | None, total_steps: int, desc: str, out: TextIO, interval_s: float
) -> BaseLogger:
    from tianshou_offline.loggers import DelegatingLogger

    class PlainProgressLogger(DelegatingLogger):
        """Delegates everything to the run's logger; prints a plain line at the first
        gradient step, then every ``interval_s`` seconds and at the end of every epoch (the
        last one says how long the run took; the test results of each epoch are Tianshou's
        own lines on stdout)."""

        def __init__(self) -> None:
            super().__init__(inner)
            self._start = 0.0
            self._last_line = 0.0
            self._first_step: int | None = None
            self._step = 0

        def log_update_data(self, log_data: dict[str, Any], step: int) -> None:
            self.inner.log_update_data(log_data, step)
            now = time.monotonic()
            self._step = step
            if self._first_step is None:
                self._first_step, self._start, self._last_line = step, now, now
                print(f"{desc}: update {step}/{total_steps}", file=out, flush=True)
            elif now - self._last_line >= interval_s:
                self._line(now)

        def _line(self, now: float, epoch: int | None = None) -> None:
            self._last_line = now
            step, first = self._step, self._first_step or 0
            rate = (step - first) / max(now - self._start, 1e-9)
            left = f", {_duration((total_steps - step) / rate)} left" if rate > 0 else ""
            done = step >= total_steps
            tail = f", done in {_duration(now - self._start)}" if done else left
            head = f"epoch {epoch}: " if epoch is not None else ""
            print(
                f"{desc}: {head}update {step}/{total_steps} "
                f"({100.0 * step / max(total_steps, 1):.0f}%), {rate:.1f} steps/s{tail}",
                file=out,
                flush=True,
            )

        def log_info_data(self, log_data: dict[str, Any], step: int) -> None:
            self.inner.log_info_data(log_data, step)
            if self._first_step is not None:  # the end of an epoch (step: its number)
                self._line(time.monotonic(), epoch=step)

    return PlainProgressLogger()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def iter_flags(cls: type[ExampleConfig]) -> Iterator[tuple[str, list[str]]]:
    """(field, its flag names) of a config class — for tests and documentation."""
    for f in dataclasses.fields(cls):
        if f.init:
            yield f.name, _flag_names(f.name, f.metadata.get("aliases", ()))

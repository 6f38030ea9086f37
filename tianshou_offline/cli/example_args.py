"""One typed argument definition for the example scripts (``examples/atari``, ``examples/mujoco``).

In the style of CORL's ``TrainConfig`` and CleanRL's ``Args``: an experiment's settings are a
dataclass whose fields are the command-line flags, each with a docstring (its ``--help``
text). The shared flags live here (:class:`ExampleConfig`, and the two dialects
:class:`AtariConfig` and :class:`MujocoConfig`); each algorithm script declares its
hyperparameters as a dataclass extending one of them, and gets back a typed config object::

    @dataclass(kw_only=True)
    class TD3BCConfig(MujocoConfig):
        norm_obs: Literal[0, 1] = 1  # another default for a shared flag
        alpha: float = 2.5
        \"\"\"weight of the Q term against the behaviour-cloning term\"\"\"

    config = parse_config(TD3BCConfig, argv, description=__doc__)

The flags are Tianshou's: every ``snake_case`` field is accepted as ``--snake-case`` and
``--snake_case``; :func:`arg` adds aliases (``--step-per-epoch``/``--epoch-num-steps``).
Unknown flags and abbreviations are errors (exit code 2), unlike Tianshou's
``parse_known_args``. Types come from the annotations: ``int``, ``float``, ``str``,
``X | None`` (default None), ``list[X]`` (any number of values), ``Literal[...]``
(choices) and ``bool`` (a switch, default False).

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeVar, overload

from tianshou_offline.errors import TianshouOfflineError

if TYPE_CHECKING:
    from tianshou.utils import BaseLogger

T = TypeVar("T")
C = TypeVar("C", bound="ExampleConfig")

MUJOCO_DEFAULT_THREADS = 1
"""Torch threads of the MuJoCo examples. Their networks (two 256-wide layers, batches of
256) are small: on a 2-core machine shared with other work (load 5-6), HalfCheetah-sized
TD3+BC updates ran at 26-30 steps/s with 1 thread and 2-5 with 2, CQL at 2-4 and 1; at load
1.6, TD3+BC 123 against 10, CQL 7 against 14 (a single run). 1 is never much slower and often
many times faster; ``tianshou-offline record --threads`` makes the same choice for batch-1
inference."""

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
    """The flags every example script takes."""

    seed: int = 0
    """seed of numpy, torch and the test environments"""
    epoch: int = 100
    """training epochs (each ends with an evaluation)"""
    batch_size: int = 256
    """transitions per gradient step"""
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """widths of the hidden layers"""
    gamma: float = 0.99
    """discount factor"""
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
    watch: bool = False
    """only evaluate the checkpoint in --resume-path, no training"""
    show_progress: Literal[0, 1] = 1
    """1: a progress bar on a terminal, a plain progress line every 30 s otherwise (log
    files); 0: neither"""

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

    task: str = "PongNoFrameskip-v4"
    """ale-py env id"""
    seed: int = 1626
    eps_test: float = 0.001
    """ε-greedy noise when evaluating"""
    lr: float = 1e-4
    """learning rate"""
    update_per_epoch: int = arg(10000, aliases=("epoch-num-steps", "step-per-epoch"))
    """gradient steps per epoch"""
    batch_size: int = 32
    hidden_sizes: list[int] = field(default_factory=lambda: [512])
    """head hidden widths"""
    frames_stack: int = 4
    """frames per observation"""
    scale_obs: Literal[0, 1] = 1
    """1: feed pixels / 255 to the net (Tianshou's examples default to 0: raw pixels)"""
    resume_path: str | None = None
    """weights-only policy.pth to resume from"""
    resume_id: str | None = None
    """wandb run id to resume"""
    logger: Literal["tensorboard", "wandb"] = "tensorboard"
    """where training statistics go"""
    wandb_project: str = "offline_atari.benchmark"
    """wandb project (--logger wandb)"""
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
    actor_lr: float = 3e-4
    """learning rate of the actor"""
    critic_lr: float = 3e-4
    """learning rate of the critics"""
    step_per_epoch: int = arg(5000, aliases=("epoch-num-steps",))
    """gradient steps per epoch"""
    n_step: int = 1
    """n-step return horizon"""
    tau: float = 0.005
    """soft target update rate"""
    norm_obs: Literal[0, 1] = 0
    """1: normalise observations with the dataset's mean and std"""
    subproc_envs: bool = False
    """evaluate in subprocesses"""
    logger: Literal["tensorboard", "none"] = "tensorboard"
    """where training statistics go"""
    render: float = 0.0
    """render the final evaluation episode with this delay between frames (s)"""
    threads: int | None = MUJOCO_DEFAULT_THREADS
    """torch CPU threads. The default, 1, suits these small networks: on a 2-core machine
    shared with other work, 2 threads ran TD3+BC 6-15x and CQL 2-4x slower; raise it on idle
    cores, for wide networks or large batches"""
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


# --------------------------------------------------------------------------- parsing


def parse_config(
    cls: type[C], argv: Sequence[str] | None = None, *, prog: str | None = None, description: str
) -> C:
    """Parse ``argv`` (default: ``sys.argv[1:]``) into a ``cls`` config.

    Unknown flags, abbreviations, bad values and :meth:`ExampleConfig.check` failures print
    the usage and one ``error:`` line, and exit with code 2.
    """
    parser = make_parser(cls, prog=prog, description=description)
    namespace = parser.parse_args(argv)
    config = cls(**vars(namespace))
    try:
        config.check()
    except ValueError as e:
        parser.error(str(e))
    return config


def make_parser(
    cls: type[ExampleConfig], *, prog: str | None = None, description: str
) -> argparse.ArgumentParser:
    """The argparse parser of a config class (one option per field)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        allow_abbrev=False,
        formatter_class=_HelpFormatter,
        epilog="Every --flag-name is also accepted as --flag_name.",
    )
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        names = _flag_names(f.name, f.metadata.get("aliases", ()))
        kwargs = _argparse_kwargs(f.name, hints[f.name])
        default = _default(f)
        help_text = " ".join(docs.get(f.name, "").split())
        if default is not None and default is not False and not _states_default(help_text):
            shown = " ".join(map(str, default)) if isinstance(default, list) else default
            help_text = f"{help_text} (default: {shown})".strip()
        parser.add_argument(
            *names, dest=f.name, default=default, help=help_text.replace("%", "%%"), **kwargs
        )
    return parser


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


def _argparse_kwargs(name: str, hint: Any) -> dict[str, Any]:
    """``type``/``nargs``/``choices``/``action`` for an annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"config field {name!r}: unsupported union {hint}")
        return _argparse_kwargs(name, inner[0])
    if hint is bool:
        return {"action": "store_true"}
    if origin is list:
        return {**_argparse_kwargs(name, args[0]), "nargs": "*"}
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
    from tianshou.utils import BaseLogger, LazyLogger

    wrapped: BaseLogger = inner if inner is not None else LazyLogger()

    class PlainProgressLogger(BaseLogger):
        """Delegates everything to the run's logger; prints a plain line at the first
        gradient step, then every ``interval_s`` seconds and at the end of every epoch (the
        last one says how long the run took; the test results of each epoch are Tianshou's
        own lines on stdout)."""

        def __init__(self) -> None:
            super().__init__(
                training_interval=wrapped.training_interval,
                test_interval=wrapped.test_interval,
                update_interval=wrapped.update_interval,
                info_interval=wrapped.info_interval,
                save_interval=wrapped.save_interval,
                exclude_arrays=wrapped.exclude_arrays,
            )
            self._start = 0.0
            self._last_line = 0.0
            self._first_step: int | None = None
            self._step = 0

        def log_update_data(self, log_data: dict[str, Any], step: int) -> None:
            wrapped.log_update_data(log_data, step)
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

        def log_training_data(self, log_data: dict[str, Any], step: int) -> None:
            wrapped.log_training_data(log_data, step)

        def log_test_data(self, log_data: dict[str, Any], step: int) -> None:
            wrapped.log_test_data(log_data, step)

        def log_info_data(self, log_data: dict[str, Any], step: int) -> None:
            wrapped.log_info_data(log_data, step)
            if self._first_step is not None:  # the end of an epoch (step: its number)
                self._line(time.monotonic(), epoch=step)

        def write(self, step_type: str, step: int, data: dict[str, Any]) -> None:
            wrapped.write(step_type, step, data)

        def prepare_dict_for_logging(self, log_data: dict[str, Any]) -> dict[str, Any]:
            prepared: dict[str, Any] = wrapped.prepare_dict_for_logging(log_data)
            return prepared

        def finalize(self) -> None:
            wrapped.finalize()

        def save_data(
            self,
            epoch: int,
            env_step: int,
            update_step: int,
            save_checkpoint_fn: Callable[[int, int, int], str] | None = None,
        ) -> None:
            wrapped.save_data(epoch, env_step, update_step, save_checkpoint_fn)

        def restore_data(self) -> tuple[int, int, int]:
            return wrapped.restore_data()

        @staticmethod
        def restore_logged_data(log_path: str) -> Any:
            return type(wrapped).restore_logged_data(log_path)

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
        yield f.name, _flag_names(f.name, f.metadata.get("aliases", ()))

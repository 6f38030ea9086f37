"""The ``tianshou-offline`` command: quickstart, record, inspect, repair, convert, export.

Bad input prints one line (``error: ...``) to stderr and exits with code 2, no traceback.
Converters plug in through ``register_cli(convert_subparsers)`` functions in their modules.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tianshou_offline import __version__
from tianshou_offline._report import REPORT_LOGGER
from tianshou_offline.errors import TianshouOfflineError

log = logging.getLogger("tianshou_offline.cli")

CONVERTER_MODULES = ("d4rl", "minari", "rl_unplugged", "tfds")
EXPORT_MODULES = ("minari",)


class UsageError(TianshouOfflineError):
    """Invalid combination of command-line options."""


# --------------------------------------------------------------------------------------
# quickstart
# --------------------------------------------------------------------------------------


def cmd_quickstart(args: argparse.Namespace) -> int:
    from tianshou_offline.quickstart import run_quickstart

    workdir = (
        Path(args.workdir)
        if args.workdir
        else Path(tempfile.mkdtemp(prefix="tianshou_offline_quickstart_"))
    )
    print(f"quickstart: working in {workdir}", flush=True)
    result = run_quickstart(
        workdir,
        episodes=args.episodes,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        eval_episodes=args.eval_episodes,
        seed=args.seed,
    )
    print()
    print(result.table())
    print()
    for name, path in result.files.items():
        print(f"{name}: {path}")
    return 0


# --------------------------------------------------------------------------------------
# record
# --------------------------------------------------------------------------------------


def cmd_record(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from tqdm import tqdm

    from tianshou_offline.policies import make_policy
    from tianshou_offline.recording import EpisodeRecorder

    if args.episodes is None and args.steps is None:
        raise UsageError("record: give --episodes N or --steps N")
    if args.overwrite and args.append:
        raise UsageError("record: --overwrite and --append are mutually exclusive")
    out = Path(args.output)
    if not out.parent.exists():
        raise UsageError(f"{out.parent}: output directory does not exist")
    atari = _is_atari(args.env)
    try:
        if atari:
            from tianshou_offline.atari import make_atari_env

            env = make_atari_env(
                args.env,
                frame_stack=args.frames_stack,
                max_episode_steps=args.max_episode_steps,
            )
        else:
            env = gym.make(args.env, max_episode_steps=args.max_episode_steps)
    except gym.error.Error as e:
        raise UsageError(f"--env {args.env}: {e}") from e
    scale_obs = None if args.scale_obs is None else bool(args.scale_obs)
    if args.policy not in ("random", "scripted"):
        import torch

        # batch-1 inference: extra intra-op threads only add synchronisation (20-50x slower
        # Atari steps on a busy 2-core machine)
        torch.set_num_threads(args.threads)
    policy = make_policy(args.policy, env, eps=args.eps, seed=args.seed, scale_obs=scale_obs)
    if_exists: Literal["error", "append", "overwrite"] = (
        "overwrite" if args.overwrite else "append" if args.append else "error"
    )
    # Atari: one 84×84 frame per step, stacks rebuilt by the loaded buffer (stack_num)
    compact = atari and args.frames_stack > 1
    extra: dict[str, Any] = {}
    if atari:
        extra = {
            "preprocessing": "AtariPreprocessing+FrameStackObservation",
            "frames_stack": args.frames_stack,
        }
    rec = EpisodeRecorder(
        env,
        out,
        if_exists=if_exists,
        episode_metadata=lambda ep: {"return": ep.episode_return, "length": ep.length},
        compression=args.compression,
        store_obs_next=not compact,
        stack_num=args.frames_stack if compact else 1,
        save_only_last_obs=compact,
        provenance_extra={"policy": args.policy, "eps": args.eps, "seed": args.seed, **extra},
    )
    episodes = steps = 0
    total = args.episodes if args.episodes is not None else args.steps
    unit = "episode" if args.episodes is not None else "step"
    returns: list[float] = []
    try:
        with tqdm(total=total, unit=unit, desc=f"recording {args.env}", file=sys.stderr) as bar:
            seed = args.seed
            while True:
                if args.episodes is not None and episodes >= args.episodes:
                    break
                if args.steps is not None and steps >= args.steps:
                    break
                obs, _ = rec.reset(seed=seed)
                seed = None if seed is None else seed + 1
                done = False
                ep_return = 0.0
                while not done:
                    obs, rew, terminated, truncated, _ = rec.step(policy(obs))
                    ep_return += float(rew)
                    done = terminated or truncated
                    steps += 1
                    if unit == "step":
                        bar.update(1)
                episodes += 1
                returns.append(ep_return)
                if unit == "episode":
                    bar.update(1)
    finally:
        rec.close()
    print(
        f"recorded {episodes} episodes, {steps} steps to {out} "
        f"(mean return {np.mean(returns):.2f}; file now holds {rec.num_episodes} episodes)"
    )
    return 0


def _is_atari(env_id: str) -> bool:
    try:
        from tianshou_offline.atari import is_atari_env_id
    except ImportError:  # pragma: no cover
        return False
    return is_atari_env_id(env_id)


# --------------------------------------------------------------------------------------
# inspect / repair
# --------------------------------------------------------------------------------------


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def cmd_inspect(args: argparse.Namespace) -> int:
    from tianshou_offline.data.format import read_metadata, space_to_dict
    from tianshou_offline.data.stats import plot_dataset, summary

    md = read_metadata(args.file)
    stats = summary(args.file)
    if args.json:
        doc: dict[str, Any] = {
            "path": str(md.path),
            "layout": md.layout,
            "format_version": md.format_version,
            "file_size": md.file_size,
            "num_transitions": md.num_transitions,
            "num_episodes": stats["episodes"],
            "observation_space": space_to_dict(md.observation_space) if md.observation_space else None,
            "action_space": space_to_dict(md.action_space) if md.action_space else None,
            "env_id": md.env_id,
            "stack_num": md.stack_num,
            "save_only_last_obs": md.save_only_last_obs,
            "obs_next_stored": md.obs_next_stored,
            "provenance": vars(md.provenance) if md.provenance else None,
            "columns": {k: {"shape": list(s), "dtype": d} for k, (s, d) in md.columns.items()},
            "statistics": stats,
        }
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(f"file:            {md.path} ({_fmt_bytes(md.file_size)})")
        print(
            f"layout:          {md.layout}"
            + (f" (format version {md.format_version})" if md.format_version else "")
        )
        print(f"transitions:     {md.num_transitions}")
        print(f"episodes:        {stats['episodes']} "
              f"({stats['terminated_episodes']} terminated, {stats['truncated_episodes']} truncated)")
        if md.env_id:
            print(f"env id:          {md.env_id}")
        if md.observation_space is not None:
            print(f"observation:     {md.observation_space}")
        if md.action_space is not None:
            print(f"action:          {md.action_space}")
        print(
            f"frame stacking:  stack_num={md.stack_num} save_only_last_obs={md.save_only_last_obs} "
            f"obs_next_stored={md.obs_next_stored}"
        )
        if md.provenance is not None:
            p = md.provenance
            print(f"provenance:      source={p.source} dataset_id={p.dataset_id}")
            print(f"                 converter={p.converter} {p.converter_version} "
                  f"(tianshou-offline {p.package_version}) created={p.created}")
            if p.extra:
                print(f"                 {json.dumps(p.extra, default=str)[:300]}")
        print("columns:")
        width = max((len(k) for k in md.columns), default=4)
        for name, (shape, dtype) in md.columns.items():
            nbytes = np.dtype(dtype).itemsize * int(np.prod(shape)) if shape else 0
            print(f"  {name:<{width}}  {shape!s:<22} {np.dtype(dtype).name:<9} {_fmt_bytes(nbytes)}")
        for key, label in (("return", "episode return"), ("length", "episode length")):
            d = stats[key]
            print(
                f"{label + ':':<17}mean {d['mean']:.3f}  std {d['std']:.3f}  min {d['min']:.3f}  "
                f"median {d['median']:.3f}  max {d['max']:.3f}"
            )
        if stats["metadata_columns"]:
            print(f"episode metadata: {', '.join(stats['metadata_columns'])}")
    if args.plot:
        out = plot_dataset(args.file, args.plot)
        print(f"plot written to {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    from tianshou_offline.data.format import committed_counts, open_h5
    from tianshou_offline.data.writer import repair_file

    repair_file(args.file)
    with open_h5(args.file) as f:
        n, n_ep = committed_counts(f)
    print(f"{args.file}: rewritten with {n_ep} committed episodes ({n} transitions)")
    return 0


def cmd_convert_tianshou(args: argparse.Namespace) -> int:
    from tianshou_offline.data.buffer import load_buffer, save_buffer
    from tianshou_offline.data.format import Provenance, read_metadata, space_from_json

    src = Path(args.input)
    md = read_metadata(src)
    buf = load_buffer(src, allow_pickle=args.allow_pickle, include_info=not args.no_info)
    out = save_buffer(
        buf,
        args.output,
        observation_space=space_from_json(args.observation_space) if args.observation_space else None,
        action_space=space_from_json(args.action_space) if args.action_space else None,
        env_id=args.env_id,
        provenance=Provenance(
            source="tianshou" if md.layout.startswith("tianshou") else md.layout,
            dataset_id=src.name,
            converter="tianshou-offline convert tianshou",
            extra={"input_layout": md.layout},
        ),
        compression=args.compression,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(buf)} transitions ({md.layout} layout) to {out}")
    return 0


# --------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser. Converter sub-commands (whose modules import tianshou, which
    takes seconds) are only registered when ``argv`` asks for ``convert`` or ``export``."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    wants_converters = bool(words) and words[0] in ("convert", "export")
    parser = argparse.ArgumentParser(
        prog="tianshou-offline",
        description="Offline-RL datasets as Tianshou ReplayBuffers (HDF5): record, convert, "
        "inspect, train.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    q = sub.add_parser("quickstart", help="record CartPole expert data, train BC, evaluate")
    q.add_argument("--workdir", help="where files go (default: a new temporary directory)")
    q.add_argument("--episodes", type=int, default=20, help="expert episodes to record")
    q.add_argument("--epochs", type=int, default=5)
    q.add_argument("--steps-per-epoch", "--step-per-epoch", dest="steps_per_epoch", type=int, default=1000)
    q.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    q.add_argument("--eval-episodes", dest="eval_episodes", type=int, default=10)
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_quickstart)

    r = sub.add_parser("record", help="record episodes of a policy to an HDF5 buffer")
    r.add_argument("--env", required=True, help="gymnasium env id, e.g. CartPole-v1")
    r.add_argument(
        "--policy",
        default="random",
        help="'random', 'scripted' (built-in CartPole expert), a policy checkpoint (.pt) or a "
        "Tianshou Atari DQN/QR-DQN policy.pth (weights only)",
    )
    r.add_argument("--episodes", type=int, help="number of episodes to record")
    r.add_argument("--steps", type=int, help="record whole episodes until this many steps")
    r.add_argument("--eps", type=float, default=0.0, help="probability of a random action")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("-o", "--output", required=True, help="output .hdf5 file")
    r.add_argument("--overwrite", action="store_true", help="replace an existing output")
    r.add_argument("--append", action="store_true", help="append to an existing output")
    r.add_argument("--compression", choices=("gzip", "lzf"), default=None)
    r.add_argument(
        "--max-episode-steps",
        type=int,
        default=None,
        help="time limit per episode (agent steps; default: the env's own)",
    )
    atari = r.add_argument_group(
        "Atari",
        "ale-py ids (PongNoFrameskip-v4, ALE/Pong-v5) get AtariPreprocessing + "
        "FrameStackObservation and are written compactly: one 84x84 frame per step, "
        "stack_num=--frames-stack, save_only_last_obs (the loaded buffer rebuilds the stacks)",
    )
    atari.add_argument("--frames-stack", dest="frames_stack", type=int, default=4)
    r.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for a checkpoint policy (batch-1 inference: 1 is fastest)",
    )
    atari.add_argument(
        "--scale-obs",
        dest="scale_obs",
        type=int,
        choices=(0, 1),
        default=None,
        help="the checkpoint's net expects pixels / 255 (default: the checkpoint's setting; "
        "0 for Tianshou DQN/QR-DQN state dicts)",
    )
    r.set_defaults(func=cmd_record)

    i = sub.add_parser("inspect", help="print schema, sizes, provenance and statistics")
    i.add_argument("file")
    i.add_argument("--plot", metavar="OUT.png", help="draw return/length histograms and actions")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_inspect)

    rp = sub.add_parser("repair", help="rewrite a file whose recorder was killed, cleanly")
    rp.add_argument("file")
    rp.set_defaults(func=cmd_repair)

    conv = sub.add_parser(
        "convert",
        help="convert a public dataset to an HDF5 buffer (d4rl, minari, rl-unplugged-atari, "
        "tfds, tianshou)",
    )
    conv_sub = conv.add_subparsers(dest="source", metavar="SOURCE", required=True)
    ct = conv_sub.add_parser(
        "tianshou",
        help="a Tianshou save_hdf5 file (ReplayBuffer/VectorReplayBuffer) or D4RL-key file",
    )
    ct.add_argument("input")
    ct.add_argument("-o", "--output", required=True)
    ct.add_argument("--overwrite", action="store_true")
    ct.add_argument("--compression", choices=("gzip", "lzf"), default=None)
    ct.add_argument("--allow-pickle", action="store_true",
                    help="unpickle pickled data columns (only for files you trust)")
    ct.add_argument("--no-info", action="store_true", help="drop the info columns")
    ct.add_argument("--env-id", help="gymnasium id of the environment, stored in the file")
    ct.add_argument("--observation-space", help="observation space as format JSON")
    ct.add_argument("--action-space", help="action space as format JSON")
    ct.set_defaults(func=cmd_convert_tianshou)
    for name in CONVERTER_MODULES if wants_converters else ():
        _register(f"tianshou_offline.converters.{name}", "register_cli", conv_sub)
    exp = sub.add_parser("export", help="export an HDF5 buffer to another format")
    exp_sub = exp.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name in EXPORT_MODULES if wants_converters else ():
        _register(f"tianshou_offline.converters.{name}", "register_export_cli", exp_sub)
    return parser


def _register(module: str, func: str, subparsers: Any) -> None:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:  # an optional dependency of that converter is missing
        log.debug("%s not available: %s", module, e)
        return
    register = getattr(mod, func, None)
    if register is not None:
        register(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return run_command(args.func, args)


class _StdoutHandler(logging.Handler):
    """Shows a handler's :func:`~tianshou_offline._report.report` lines on (the current)
    stdout, as plain lines."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), flush=True)


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command handler the way every entry point does (``tianshou-offline`` and the
    ``converters/*.py`` scripts): its reported results go to stdout; a typed error prints
    ``error: <message>`` and returns 2, no traceback; Ctrl-C returns 130."""
    with reports_on_stdout():
        return _run(func, args)


@contextmanager
def reports_on_stdout() -> Iterator[None]:
    """Within the block, :func:`~tianshou_offline._report.report` lines go to stdout (and
    nowhere else)."""
    handler = _StdoutHandler(logging.INFO)
    level, propagate = REPORT_LOGGER.level, REPORT_LOGGER.propagate
    REPORT_LOGGER.addHandler(handler)
    REPORT_LOGGER.setLevel(logging.INFO)
    REPORT_LOGGER.propagate = False
    try:
        yield
    finally:
        REPORT_LOGGER.removeHandler(handler)
        REPORT_LOGGER.setLevel(level)
        REPORT_LOGGER.propagate = propagate


def _run(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    try:
        code = func(args)
    except TianshouOfflineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        sys.stderr.close()
        return 0
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())

"""``tianshou-offline convert SOURCE …``: one sub-command per converter, and the entries of
the stand-alone ``converters/convert_*.py`` scripts.

Building these parsers imports no converter (so ``--help`` is instant); each handler imports
its converter, calls ``convert_<source>(source, output, …)`` and prints the result's line.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tianshou_offline.cli._run import (
    Subparsers,
    add_clean_argument,
    check_output,
    clean_outputs,
    run_script,
)

_COMPRESSION = ("gzip", "lzf")


def _compression(value: str | None) -> Any:
    return None if value in (None, "none") else value


def _progress(args: argparse.Namespace) -> bool | None:
    """tqdm's choice (a bar on a terminal) unless ``--no-progress``."""
    return False if args.no_progress else None


def _clean_or_check(args: argparse.Namespace) -> int | None:
    """``--clean``: remove ``-o/--output`` and return the exit code; otherwise refuse an
    output that exists without ``--overwrite`` (before the converter's imports) and return
    None."""
    if args.clean:
        return clean_outputs([Path(args.output)])
    check_output(args.output, flag="-o/--output", overwrite=args.overwrite)
    return None


def _write_options(args: argparse.Namespace) -> dict[str, Any]:
    """The converter's keywords of :func:`add_output_arguments`' ``--compression``,
    ``--overwrite`` and (where the source has it) ``--nan-policy``."""
    options: dict[str, Any] = {
        "compression": _compression(args.compression),
        "overwrite": args.overwrite,
    }
    if "nan_policy" in args:
        options["nan_policy"] = args.nan_policy
    return options


# --------------------------------------------------------------------------------------
# d4rl
# --------------------------------------------------------------------------------------


def add_output_arguments(
    parser: argparse.ArgumentParser,
    *,
    output: str | None = "output .hdf5 buffer file",
    nan_policy: bool = False,
) -> None:
    """The options every conversion shares: ``-o/--output`` (unless ``output`` is None),
    ``--overwrite``, ``--compression``, ``--nan-policy`` (with ``nan_policy``),
    ``--no-progress`` and ``--clean``."""
    if output is not None:
        parser.add_argument("-o", "--output", required=True, help=output)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument(
        "--compression",
        choices=("none", *_COMPRESSION),
        default=None,
        help="HDF5 compression of the output (default: none, fastest to write and load)",
    )
    if nan_policy:
        parser.add_argument(
            "--nan-policy",
            choices=("error", "warn", "ignore"),
            default="error",
            help="non-finite rewards: refuse (default), keep with a warning, or keep silently",
        )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_clean_argument(parser)


def add_d4rl_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``convert d4rl`` (also ``converters/convert_d4rl.py``)."""
    parser.add_argument(
        "source",
        metavar="NAME_OR_PATH",
        help="D4RL dataset name (hopper-medium-v2: looked up in $D4RL_DATASET_DIR or "
        "~/.d4rl/datasets) or a D4RL-layout HDF5 file",
    )
    add_output_arguments(parser, nan_policy=True)
    parser.add_argument(
        "--qlearning-compat",
        action="store_true",
        help="reproduce d4rl.qlearning_dataset row for row (drops time-limit rows and the "
        "final row, obs_next = next row, float32), for comparability with papers",
    )
    parser.add_argument(
        "--float32",
        action="store_true",
        help="cast float64 observations/actions/rewards to float32 (default: keep dtypes)",
    )
    parser.add_argument(
        "--with-infos", action="store_true", help="store the infos/* columns as the buffer's info"
    )
    parser.add_argument(
        "--max-episode-steps",
        type=int,
        default=None,
        metavar="N",
        help="time limit for files without 'timeouts' (default: D4RL's limit for known names)",
    )
    parser.add_argument("--env-id", default=None, help="gymnasium env id to record for evaluation")


def cmd_d4rl(args: argparse.Namespace) -> int:
    if (code := _clean_or_check(args)) is not None:
        return code
    from tianshou_offline.converters.d4rl import convert_d4rl

    res = convert_d4rl(
        args.source,
        args.output,
        qlearning_compat=args.qlearning_compat,
        float32=args.float32,
        with_infos=args.with_infos,
        max_episode_steps=args.max_episode_steps,
        env_id=args.env_id,
        progress=_progress(args),
        **_write_options(args),
    )
    print(
        f"wrote {res.output}: {res.num_transitions} transitions, {res.num_episodes} episodes "
        f"({res.details.get('rows_dropped', 0)} source rows dropped)"
    )
    return 0


def main_d4rl(argv: Sequence[str] | None = None) -> int:
    """``converters/convert_d4rl.py NAME_OR_PATH -o OUT`` (same as ``convert d4rl``)."""
    return run_script(
        add_d4rl_arguments,
        cmd_d4rl,
        argv,
        prog="convert_d4rl.py",
        description="Convert a D4RL dataset (name or HDF5 file) to a tianshou-offline buffer.",
    )


# --------------------------------------------------------------------------------------
# minari
# --------------------------------------------------------------------------------------


def add_minari_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``convert minari`` (also ``converters/convert_minari.py``)."""
    parser.add_argument(
        "source",
        metavar="DATASET_ID_OR_PATH",
        help="Minari dataset id (looked up in $MINARI_DATASETS_PATH or ~/.minari/datasets) or "
        "a local dataset directory",
    )
    add_output_arguments(parser, nan_policy=True)
    parser.add_argument(
        "--download",
        action="store_true",
        help="download the dataset first if it is not available locally",
    )
    parser.add_argument(
        "--episodes",
        default=None,
        metavar="SEL",
        help="episode subset, Python slice syntax: 0:100, :10, 5, 1,3,10:20",
    )
    parser.add_argument("--with-infos", action="store_true", help="store episode infos as info")
    parser.add_argument(
        "--reader",
        choices=("auto", "minari"),
        default="auto",
        help="auto: bulk fast path when possible (default); minari: always "
        "MinariDataset.iterate_episodes",
    )


def cmd_minari(args: argparse.Namespace) -> int:
    if (code := _clean_or_check(args)) is not None:
        return code
    from tianshou_offline.converters.minari import convert_minari

    res = convert_minari(
        args.source,
        args.output,
        episodes=args.episodes,
        with_infos=args.with_infos,
        download=args.download,
        reader=args.reader,
        progress=_progress(args),
        **_write_options(args),
    )
    print(f"wrote {res.output}: {res.num_transitions} transitions, {res.num_episodes} episodes")
    return 0


def main_minari(argv: Sequence[str] | None = None) -> int:
    """``converters/convert_minari.py DATASET_ID -o OUT`` (same as ``convert minari``)."""
    return run_script(
        add_minari_arguments,
        cmd_minari,
        argv,
        prog="convert_minari.py",
        description="Convert a Minari dataset to a tianshou-offline HDF5 buffer.",
    )


# --------------------------------------------------------------------------------------
# rl-unplugged-atari
# --------------------------------------------------------------------------------------


def add_rl_unplugged_arguments(p: argparse.ArgumentParser, *, legacy_names: bool = False) -> None:
    """The options of ``convert rl-unplugged-atari`` (``legacy_names``: also the names of
    Tianshou's ``convert_rl_unplugged_atari.py``, ``--dataset-dir`` and ``--buffer-dir``)."""
    p.add_argument("--task", help="Atari game, e.g. Breakout (one of the 46 RL Unplugged games)")
    p.add_argument("--run-id", type=int, default=1, help="run 1..5 (default 1)")
    p.add_argument(
        "--shard-id",
        nargs="+",
        default=None,
        metavar="ID|RANGE|FILE",
        help="shard ids (1, 0-99, 1,3,5-7) and/or TFRecord files to convert",
    )
    p.add_argument("--total-num-shards", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes (default: all cores; 1 = in-process)",
    )
    p.add_argument(
        "--resume", action="store_true", help="skip shards already converted and verified"
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="one Ray task per shard (needs the [ray] extra): on a new local Ray instance, or "
        "on the cluster at ADDRESS (auto, HOST:6379, ray://HOST:10001); sources and output "
        "dir must be at the same paths on every node; --workers is then each task's CPUs",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=3,
        metavar="N",
        help="with --ray: how often a shard whose worker died is run again (default 3)",
    )
    add_output_arguments(p, output=None)
    p.add_argument(
        "--contiguous",
        action="store_true",
        help="store the columns contiguous and uncompressed, so that load_rl_unplugged(..., "
        "memory='disk') and the Atari examples' --memory disk map them (no --compression)",
    )
    p.add_argument(
        "--download", action="store_true", help="download missing shards into the cache dir"
    )
    cache_names = ["--cache-dir", "--dataset-dir"] if legacy_names else ["--cache-dir"]
    out_names = ["--output-dir", "--buffer-dir"] if legacy_names else ["--output-dir"]
    p.add_argument(
        *cache_names,
        dest="cache_dir",
        default=None,
        help="raw shards (default $RLU_DATASET_DIR, else ~/.rl_unplugged/cache)",
    )
    p.add_argument(
        *out_names,
        dest="output_dir",
        default=None,
        help="converted buffers (default $RLU_BUFFER_DIR, else ~/.rl_unplugged/buffers)",
    )
    p.add_argument("--num-actions", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--url-prefix", default=None, help=argparse.SUPPRESS)
    p.add_argument("--decoder", default="auto", choices=("auto", "pyspng", "cv2", "pillow"),
                   help=argparse.SUPPRESS)  # fmt: skip


def cmd_rl_unplugged(args: argparse.Namespace) -> int:
    given_dir = args.output_dir or os.environ.get("RLU_BUFFER_DIR")
    if given_dir and not args.clean:  # before the converter's imports (torch)
        flag = "--output-dir" if args.output_dir else "$RLU_BUFFER_DIR"
        check_output(Path(given_dir).expanduser(), flag=flag, overwrite=None, directory=True,
                     parents=True)  # fmt: skip
    from tianshou_offline.converters import rl_unplugged as rlu
    from tianshou_offline.converters.result import ConversionResult

    if args.contiguous and args.compression:
        from tianshou_offline.cli._run import UsageError

        raise UsageError("--contiguous stores uncompressed columns; drop --compression")
    total = args.total_num_shards or rlu.TOTAL_NUM_SHARDS
    tokens = args.shard_id if args.shard_id is not None else ["0"]
    ids, paths = rlu.parse_shard_spec(tokens, total)
    cache_dir = args.cache_dir or os.environ.get("RLU_DATASET_DIR") or rlu.DEFAULT_CACHE_DIR
    output_dir = args.output_dir or os.environ.get("RLU_BUFFER_DIR") or rlu.DEFAULT_OUTPUT_DIR
    shards: dict[str, Any] = {  # which shards, where
        "task": args.task,
        "run_id": args.run_id,
        "shard_ids": ids,
        "cache_dir": cache_dir,
        "total_num_shards": total,
    }
    if args.clean:  # the outputs, and the downloads of shards given by id
        return clean_outputs(rlu.shard_outputs(paths, output_dir, **shards))

    def report_shard(res: ConversionResult) -> None:
        if res.skipped:
            print(f"skipped (already converted): {res.output}", flush=True)
            return
        stacks = int(res.details.get("obs_patches", 0)) + int(
            res.details.get("obs_next_patches", 0)
        )
        print(
            f"{res.output}: {res.num_transitions} transitions, {res.num_episodes} episodes, "
            f"{stacks} full stacks kept, "
            f"{res.seconds:.1f}s ({res.transitions_per_second:,.0f} transitions/s)",
            flush=True,
        )

    options: dict[str, Any] = {
        **shards,
        "resume": args.resume,
        "overwrite": args.overwrite,
        "download": args.download,
        "url_prefix": args.url_prefix or rlu.URL_PREFIX,
        "compression": _compression(args.compression),
        "contiguous": args.contiguous,
        "num_actions": args.num_actions,
        "decoder": args.decoder,
        "on_result": report_shard,
    }
    if args.ray is not None:
        return _rl_unplugged_on_ray(args, paths, output_dir, options)
    rlu.convert_rl_unplugged_atari(
        paths, output_dir, workers=args.workers, progress=not args.no_progress, **options
    )
    return 0


def _rl_unplugged_on_ray(
    args: argparse.Namespace,
    paths: Sequence[Path],
    output_dir: str | os.PathLike[str],
    options: dict[str, Any],
) -> int:
    """``--ray``: the shards as Ray tasks; the failed ones listed, then one ``error:`` line.
    ``options``: the keywords the local conversion would take, less ``workers``."""
    from tianshou_offline.scale.convert import convert_rl_unplugged_atari_ray

    res = convert_rl_unplugged_atari_ray(
        paths,
        output_dir,
        address=args.ray or None,
        num_cpus=float(args.workers or 1),
        max_retries=args.max_retries,
        progress=False if args.no_progress else None,
        **options,
    )
    for f in res.failures:
        print(f"failed: {f.source} -> {f.output}: {f.error}", flush=True)
    n = len(res.parts) + len(res.failures)
    print(f"{len(res.parts)} of {n} shards converted or already done in {res.seconds:.1f}s "
          f"({res.num_transitions} transitions)", flush=True)  # fmt: skip
    if res.failures:
        from tianshou_offline.errors import TianshouOfflineError

        raise TianshouOfflineError(
            f"{len(res.failures)} of {n} shards failed (listed above); fix them and rerun with "
            "--resume to convert only those"
        )
    return 0


def main_rl_unplugged_atari(argv: Sequence[str] | None = None) -> int:
    """``converters/convert_rl_unplugged_atari.py``: Tianshou's script flags (``--task``,
    ``--run-id``, ``--shard-id``, ``--dataset-dir``/``--buffer-dir``) plus ``--workers``,
    ``--resume``, ``--overwrite``, ``--download``."""
    return run_script(
        lambda p: add_rl_unplugged_arguments(p, legacy_names=True),
        cmd_rl_unplugged,
        argv,
        prog="convert_rl_unplugged_atari.py",
        description="Convert RL Unplugged Atari shards to compact, exact tianshou-offline buffers.",
    )


# --------------------------------------------------------------------------------------
# tfds
# --------------------------------------------------------------------------------------


def add_tfds_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``convert tfds``."""
    p.add_argument("name", help="tfds name[/config][:version], e.g. rlu_atari/Breakout_run_1")
    p.add_argument("--data-dir", required=True, help="tensorflow-datasets data directory")
    add_output_arguments(p)
    p.add_argument("--split", default="train")
    p.add_argument(
        "--frame-stack",
        type=int,
        default=None,
        metavar="S",
        help="store image observations one frame per step with Tianshou stack_num=S",
    )
    p.add_argument("--max-episodes", type=int, default=None)


def cmd_tfds(args: argparse.Namespace) -> int:
    if (code := _clean_or_check(args)) is not None:
        return code
    from tianshou_offline.converters.tfds import convert_tfds

    res = convert_tfds(
        args.name,
        args.output,
        data_dir=args.data_dir,
        split=args.split,
        frame_stack=args.frame_stack,
        max_episodes=args.max_episodes,
        progress=not args.no_progress,
        **_write_options(args),
    )
    print(f"{res.output}: {res.num_transitions} transitions, {res.num_episodes} episodes")
    return 0


# --------------------------------------------------------------------------------------
# tianshou
# --------------------------------------------------------------------------------------


def add_tianshou_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``convert tianshou``."""
    p.add_argument("input")
    add_output_arguments(p)
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="unpickle pickled data columns (only for files you trust)",
    )
    p.add_argument("--no-info", action="store_true", help="drop the info columns")
    p.add_argument("--env-id", help="gymnasium id of the environment, stored in the file")
    p.add_argument("--observation-space", help="observation space as format JSON")
    p.add_argument("--action-space", help="action space as format JSON")


def cmd_tianshou(args: argparse.Namespace) -> int:
    if (code := _clean_or_check(args)) is not None:
        return code
    from tianshou_offline.converters.tianshou import convert_tianshou
    from tianshou_offline.data.format import space_from_json

    res = convert_tianshou(
        args.input,
        args.output,
        allow_pickle=args.allow_pickle,
        include_info=not args.no_info,
        observation_space=space_from_json(args.observation_space)
        if args.observation_space
        else None,
        action_space=space_from_json(args.action_space) if args.action_space else None,
        env_id=args.env_id,
        **_write_options(args),
    )
    layout = res.details.get("input_layout")
    print(f"wrote {res.num_transitions} transitions ({layout} layout) to {res.output}")
    return 0


# --------------------------------------------------------------------------------------
# the group
# --------------------------------------------------------------------------------------


def register(sub: Subparsers) -> None:
    """Add ``convert`` and its sources to the ``tianshou-offline`` command."""
    conv = sub.add_parser(
        "convert",
        help="convert a public dataset to an HDF5 buffer (d4rl, minari, rl-unplugged-atari, "
        "tfds, tianshou)",
    )
    sources = conv.add_subparsers(dest="source", metavar="SOURCE", required=True)
    p = sources.add_parser(
        "d4rl",
        help="D4RL HDF5 file or dataset name → buffer (no d4rl/gym/mujoco needed)",
        description="Convert a D4RL dataset (name or HDF5 file) to a tianshou-offline buffer. "
        "Default: terminated = terminals, truncated = timeouts, obs_next from "
        "next_observations (else the next row; the last transition of a timed-out episode is "
        "then dropped). See docs/CONVERTERS.md.",
    )
    add_d4rl_arguments(p)
    p.set_defaults(func=cmd_d4rl)
    p = sources.add_parser(
        "minari",
        help="Minari dataset (id or directory; HDF5 or Arrow storage) → buffer",
        description="Convert a Minari dataset to a tianshou-offline buffer: each episode's "
        "T+1 observations become obs/obs_next; terminations/truncations, spaces (Dict/Tuple "
        "kept nested), env spec, episode ids and seeds are kept. See docs/CONVERTERS.md.",
    )
    add_minari_arguments(p)
    p.set_defaults(func=cmd_minari)
    p = sources.add_parser(
        "rl-unplugged-atari",
        help="RL Unplugged Atari TFRecord shards -> compact exact buffers (no TensorFlow)",
        description=(
            "Convert RL Unplugged Atari shards ({Game}/run_N-XXXXX-of-00100) into compact "
            "tianshou-offline buffers: one frame per step, Tianshou stack_num=4, every stack "
            "verified against the records. Open them with "
            "tianshou_offline.converters.rl_unplugged.load_rl_unplugged()."
        ),
    )
    add_rl_unplugged_arguments(p)
    p.set_defaults(func=cmd_rl_unplugged)
    p = sources.add_parser(
        "tfds",
        help="an RLDS dataset prepared with tensorflow-datasets -> buffer (needs [tfds] extra)",
        description=(
            "Convert an RLDS dataset already prepared with tensorflow-datasets in a local "
            "data dir (rlu_atari/Breakout_run_1, d4rl_mujoco_hopper/v2-medium, ...)."
        ),
    )
    add_tfds_arguments(p)
    p.set_defaults(func=cmd_tfds)
    p = sources.add_parser(
        "tianshou",
        help="a Tianshou save_hdf5 file (ReplayBuffer/VectorReplayBuffer) or D4RL-key file",
    )
    add_tianshou_arguments(p)
    p.set_defaults(func=cmd_tianshou)


__all__ = ["main_d4rl", "main_minari", "main_rl_unplugged_atari", "register"]

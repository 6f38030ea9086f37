"""``tianshou-offline export TARGET …``: buffer files → other formats (Minari)."""

from __future__ import annotations

import argparse
import json

from tianshou_offline.cli._run import (
    Subparsers,
    add_clean_argument,
    check_input,
    check_output,
    clean_outputs,
)


def add_minari_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``export minari``."""
    parser.add_argument("buffer", metavar="BUFFER.hdf5", help="buffer file to export")
    parser.add_argument(
        "--dataset-id", required=True, help="id of the new Minari dataset, (namespace/)name-vN"
    )
    parser.add_argument(
        "--data-format",
        choices=("hdf5", "arrow", "parquet"),
        default="hdf5",
        help="Minari storage backend (default: hdf5)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.add_argument("--no-infos", action="store_true", help="do not export info columns")
    parser.add_argument(
        "--jpeg",
        action="store_true",
        help="JPEG-encode image observations (lossy; default: raw arrays)",
    )
    parser.add_argument("--author", default=None)
    parser.add_argument("--author-email", default=None)
    parser.add_argument("--algorithm-name", default=None)
    parser.add_argument("--code-permalink", default=None)
    parser.add_argument("--description", default=None)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_clean_argument(parser)


def cmd_export_minari(args: argparse.Namespace) -> int:
    from tianshou_offline.converters.minari.export import export_target

    if args.clean:
        return clean_outputs([export_target(args.dataset_id)])
    check_input(args.buffer, what="a buffer file to export")
    check_output(
        export_target(args.dataset_id),
        flag=f"--dataset-id {args.dataset_id} ($MINARI_DATASETS_PATH/ID)",
        overwrite=args.overwrite,
        directory=True,
        parents=True,
        exists_hint="pass --overwrite to replace the dataset",
    )
    from tianshou_offline.converters.minari import export_minari

    data = export_minari(
        args.buffer,
        args.dataset_id,
        data_format=args.data_format,
        overwrite=args.overwrite,
        include_infos=not args.no_infos,
        jpeg_encoding=args.jpeg,
        author=args.author,
        author_email=args.author_email,
        algorithm_name=args.algorithm_name,
        code_permalink=args.code_permalink,
        description=args.description,
        progress=False if args.no_progress else None,
    )
    with open(data / "metadata.json") as fh:
        meta = json.load(fh)
    print(
        f"wrote Minari dataset {args.dataset_id} at {data.parent}: "
        f"{meta.get('total_episodes')} episodes, {meta.get('total_steps')} steps"
    )
    return 0


def register(sub: Subparsers) -> None:
    """Add ``export`` and its targets to the ``tianshou-offline`` command."""
    exp = sub.add_parser("export", help="export an HDF5 buffer to another format")
    targets = exp.add_subparsers(dest="target", metavar="TARGET", required=True)
    p = targets.add_parser(
        "minari",
        help="buffer → Minari dataset (loadable with minari.load_dataset)",
        description="Write a buffer file as a Minari dataset under $MINARI_DATASETS_PATH "
        "(or ~/.minari/datasets). Minari → buffer → Minari preserves every episode exactly.",
    )
    add_minari_export_arguments(p)
    p.set_defaults(func=cmd_export_minari)

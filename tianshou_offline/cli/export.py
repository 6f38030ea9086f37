"""``tianshou-offline export TARGET …``: buffer files → other formats (Minari);
``tianshou-offline export-policy CKPT``: a policy checkpoint → TorchScript or ONNX."""

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


def cmd_export_policy(args: argparse.Namespace) -> int:
    check_input(args.checkpoint, what="a policy checkpoint (CKPT)")
    check_output(args.output, flag="-o/--output", overwrite=args.overwrite)
    from tianshou_offline.deploy import export_policy

    r = export_policy(
        args.checkpoint,
        args.output,
        format=args.format,
        deterministic=args.deterministic,
        overwrite=args.overwrite,
    )
    obs = ", ".join(["B", *(str(d) for d in r.obs_shape)])
    act = ", ".join(["B", *(str(d) for d in r.act_shape)])
    print(
        f"wrote {r.path} ({r.format}): {r.policy}, {r.mode}; "
        f"obs ({obs}) {r.obs_dtype} -> act ({act}) {r.act_dtype} in the env's units"
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

    pol = sub.add_parser(
        "export-policy",
        help="policy checkpoint → TorchScript or ONNX graph (raw obs → env actions)",
        description="Export a policy checkpoint (save_policy_checkpoint / save_atari_checkpoint, "
        "e.g. an example's or a grid cell's policy.pt) as one graph that takes raw observations "
        "(the policy's normalisation included) and returns actions in the environment's units. "
        "Load it with torch.jit.load or onnxruntime.InferenceSession (input 'obs', output 'act', "
        "any batch size).",
    )
    pol.add_argument("checkpoint", metavar="CKPT", help="policy checkpoint file")
    pol.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript",
                     help="torchscript (default) or onnx (needs tianshou-offline[onnx])")  # fmt: skip
    pol.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write")
    pol.add_argument(
        "--deterministic",
        action="store_true",
        help="export a sampling policy's deterministic form (BCQ: the VAE latent z=0; CRR's "
        "critic-weighted policy and sampling actors: the mode); required for them",
    )
    pol.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    pol.set_defaults(func=cmd_export_policy)

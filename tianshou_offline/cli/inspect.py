"""``tianshou-offline inspect``, ``repair`` and ``repack``: look at a buffer file, mend a killed
one, rewrite one so that ``--memory disk`` can memory-map it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tianshou_offline.cli._run import Subparsers, check_input, check_output


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.plot:
        check_output(args.plot, flag="--plot", overwrite=args.overwrite)
    import numpy as np

    from tianshou_offline.data.atomic import format_size
    from tianshou_offline.data.format import read_metadata, space_to_dict
    from tianshou_offline.data.reference import read_reference_scores, stored_reference_scores
    from tianshou_offline.data.repack import unmappable_columns
    from tianshou_offline.data.stats import plot_dataset, summary

    md = read_metadata(args.file)
    stats = summary(args.file)
    record = read_reference_scores(args.file)
    refs = stored_reference_scores(args.file)
    unmappable = unmappable_columns(args.file) if md.layout == "tianshou_offline" else []
    if args.json:
        doc: dict[str, Any] = {
            "path": str(md.path),
            "layout": md.layout,
            "format_version": md.format_version,
            "file_size": md.file_size,
            "num_transitions": md.num_transitions,
            "num_episodes": stats["episodes"],
            "observation_space": space_to_dict(md.observation_space)
            if md.observation_space
            else None,
            "action_space": space_to_dict(md.action_space) if md.action_space else None,
            "env_id": md.env_id,
            "stack_num": md.stack_num,
            "save_only_last_obs": md.save_only_last_obs,
            "obs_next_stored": md.obs_next_stored,
            "provenance": vars(md.provenance) if md.provenance else None,
            "columns": {k: {"shape": list(s), "dtype": d} for k, (s, d) in md.columns.items()},
            "statistics": stats,
            "reference_scores": (
                record.to_dict()
                if record is not None
                else None
                if refs is None
                else {"ref_min_score": refs[0], "ref_max_score": refs[1]}
            ),
            "disk_mappable": md.layout == "tianshou_offline" and not unmappable,
        }
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(f"file:            {md.path} ({format_size(md.file_size)})")
        print(
            f"layout:          {md.layout}"
            + (f" (format version {md.format_version})" if md.format_version else "")
        )
        print(f"transitions:     {md.num_transitions}")
        print(
            f"episodes:        {stats['episodes']} "
            f"({stats['terminated_episodes']} terminated, {stats['truncated_episodes']} truncated"
            + (
                f", {stats['cut_episodes']} cut: neither flag set, the data stops mid-episode"
                if stats["cut_episodes"]
                else ""
            )
            + ")"
        )
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
            print(
                f"                 converter={p.converter} {p.converter_version} "
                f"(tianshou-offline {p.package_version}) created={p.created}"
            )
            if p.extra:
                print(f"                 {json.dumps(p.extra, default=str)[:300]}")
        print("columns:")
        width = max((len(k) for k in md.columns), default=4)
        for name, (shape, dtype) in md.columns.items():
            nbytes = np.dtype(dtype).itemsize * int(np.prod(shape)) if shape else 0
            print(
                f"  {name:<{width}}  {shape!s:<22} {np.dtype(dtype).name:<9} {format_size(nbytes)}"
            )
        for key, label in (("return", "episode return"), ("length", "episode length")):
            d = stats[key]
            print(
                f"{label + ':':<17}mean {d['mean']:.3f}  std {d['std']:.3f}  min {d['min']:.3f}  "
                f"median {d['median']:.3f}  max {d['max']:.3f}"
            )
        if record is not None:
            level = f"{100 * record.confidence:g}% CI"
            for name, ref in (("random", record.random), ("expert", record.expert)):
                print(
                    f"{'ref. ' + name + ':':<17}{ref.mean:.6g} ({level} [{ref.ci_low:.6g}, "
                    f"{ref.ci_high:.6g}], {ref.episodes} episodes; {ref.source})"
                )
        elif refs is not None:
            print(f"reference scores: random {refs[0]:.6g}, expert {refs[1]:.6g}")
        if stats["metadata_columns"]:
            print(f"episode metadata: {', '.join(stats['metadata_columns'])}")
        if md.layout == "tianshou_offline":
            line = _memory_line(args.file, md.columns, unmappable)
            if line:
                print(line)
    if args.plot:
        out = plot_dataset(args.file, args.plot, overwrite=args.overwrite)
        print(f"plot written to {out}", file=sys.stderr if args.json else sys.stdout)
    if args.card:
        from tianshou_offline.data.card import write_dataset_card

        card, image = write_dataset_card(args.file, args.card, overwrite=args.overwrite)
        print(f"card written to {card} (histogram {image.name})",
              file=sys.stderr if args.json else sys.stdout)  # fmt: skip
    return 0


def _memory_line(
    file: str, columns: dict[str, tuple[tuple[int, ...], str]], unmappable: list[str]
) -> str | None:
    """Whether ``memory='disk'`` can map the file; a repacked copy is suggested only where it
    matters — columns larger than half of the available memory, where ``memory='auto'``
    chooses the disk — and as an option. A smaller file loads into RAM: nothing to say."""
    import numpy as np

    from tianshou_offline.data import mapped  # not ondisk: it imports tianshou (seconds)
    from tianshou_offline.data.atomic import format_size

    if not unmappable:
        return "memory='disk':   ready (contiguous, uncompressed columns are memory-mapped)"
    nbytes = sum(
        int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in columns.values()
    )
    avail = mapped.available_memory()
    if nbytes <= avail // 2:
        return None
    return (
        f"memory='disk':   an option for data this size ({format_size(nbytes)}, "
        f"{format_size(avail)} of memory available): `tianshou-offline repack {file} OUT` writes "
        f"a copy it can memory-map ({', '.join(unmappable)} chunked or compressed here)"
    )


def cmd_repair(args: argparse.Namespace) -> int:
    from tianshou_offline.data.format import committed_counts, open_h5
    from tianshou_offline.data.repair import repair_file

    repair_file(args.file)
    with open_h5(args.file) as f:
        n, n_ep = committed_counts(f)
    print(f"{args.file}: rewritten with {n_ep} committed episodes ({n} transitions)")
    return 0


def cmd_repack(args: argparse.Namespace) -> int:
    check_input(args.file, what="a buffer file")
    check_output(args.output, flag="OUTPUT", overwrite=args.overwrite)
    from tianshou_offline.data.format import read_metadata
    from tianshou_offline.data.repack import repack

    progress = False if args.no_progress else None
    out = repack(args.file, args.output, overwrite=args.overwrite, progress=progress)
    md = read_metadata(out)
    print(
        f"{out}: {md.num_transitions} transitions with contiguous, uncompressed columns "
        "(load with memory='disk' / --memory disk)"
    )
    return 0


def register(sub: Subparsers) -> None:
    """Add ``inspect``, ``repair`` and ``repack`` to the ``tianshou-offline`` command."""
    i = sub.add_parser("inspect", help="print schema, sizes, provenance and statistics")
    i.add_argument("file")
    i.add_argument("--plot", metavar="OUT.png", help="draw return/length histograms and actions")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument(
        "--card",
        metavar="CARD.md",
        help="write a dataset card (Markdown: spaces, sizes, episodes, reference scores, "
        "provenance, licence) and its return histogram CARD_returns.png beside it",
    )
    i.add_argument("--overwrite", action="store_true",
                   help="replace an existing --plot or --card file")  # fmt: skip
    i.set_defaults(func=cmd_inspect)

    rp = sub.add_parser("repair", help="rewrite a file whose recorder was killed, cleanly")
    rp.add_argument("file")
    rp.set_defaults(func=cmd_repair)

    rk = sub.add_parser(
        "repack",
        help="copy a file with contiguous, uncompressed columns (for --memory disk)",
        description="Copy FILE to OUTPUT with every column stored contiguous and uncompressed, "
        "the layout a disk-backed buffer (load_buffer(..., memory='disk'), the examples' "
        "--memory disk) memory-maps. Data and metadata are unchanged; OUTPUT is written "
        "atomically.",
    )
    rk.add_argument("file")
    rk.add_argument("output")
    rk.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    rk.add_argument("--no-progress", action="store_true", help="no progress bar")
    rk.set_defaults(func=cmd_repack)

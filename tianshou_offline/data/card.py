"""A dataset card (``tianshou-offline inspect FILE --card card.md``): the page a dataset hub
shows, written as Markdown with the episode-return histogram as a PNG beside it, so that a
converted or generated dataset can be shared with its description.

The card holds: what the file is (layout, size, environment), its spaces, sizes and columns,
episode statistics (returns, lengths, how episodes end) with the histogram, the reference
scores (a computed record with its intervals and sources, or the scores a converter stored;
otherwise how to compute them), the provenance (source, dataset id, converter and version,
creation time, the converter's further facts) and the licence when the file records one
(a ``license``/``licence`` field of the provenance or of its Minari metadata). Everything is
read from the file: nothing is guessed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tianshou_offline.data.atomic import check_new_output, format_size


def _licence(extra: dict[str, Any]) -> str | None:
    sources = [extra] + [
        extra[k] for k in ("minari", "minari_metadata") if isinstance(extra.get(k), dict)
    ]
    for source in sources:
        for key in ("license", "licence"):
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def histogram_png(returns: np.ndarray, out: Path, title: str) -> None:
    """Draw the episode-return histogram to ``out`` (PNG, written as given: the caller
    publishes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tianshou_offline.data.stats import histogram

    fig, ax = plt.subplots(figsize=(6, 3.5))
    note = histogram(ax, returns, "tab:blue")
    ax.set_title(f"{title}: episode return (n={len(returns)}){note}")
    ax.set_xlabel("undiscounted return")
    ax.set_ylabel("episodes")
    fig.tight_layout()
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)


def card_markdown(path: str | os.PathLike[str], image_name: str) -> str:
    """The card of the dataset at ``path`` as Markdown; ``image_name`` is the histogram's
    file name (relative to the card)."""
    from tianshou_offline.data.format import read_metadata
    from tianshou_offline.data.reference import read_reference_scores, stored_reference_scores
    from tianshou_offline.data.stats import describe, episode_table

    p = Path(path)
    md = read_metadata(p)
    table = episode_table(p)
    prov = md.provenance
    title = (prov.dataset_id if prov is not None and prov.dataset_id else None) or p.name
    lines = [f"# {title}", ""]
    lines += [
        "| | |", "|---|---|",
        f"| file | `{p.name}` ({format_size(md.file_size)}) |",
        f"| layout | {md.layout}" + (f" (format version {md.format_version})" if md.format_version else "") + " |",
        f"| environment | {md.env_id or 'not recorded'} |",
        f"| transitions | {md.num_transitions} |",
        f"| episodes | {len(table.returns)} ({int(table.terminated.sum())} terminated, "
        f"{int(table.truncated.sum())} truncated, "
        f"{int((~(table.terminated | table.truncated)).sum())} neither) |",
        f"| frame stacking | stack_num={md.stack_num}, save_only_last_obs={md.save_only_last_obs} |",
        "",
    ]  # fmt: skip
    lines += ["## Spaces", ""]
    lines.append(f"- observation: `{md.observation_space}`" if md.observation_space is not None
                 else "- observation: not recorded (a foreign layout; see the columns)")  # fmt: skip
    lines.append(f"- action: `{md.action_space}`" if md.action_space is not None
                 else "- action: not recorded (a foreign layout; see the columns)")  # fmt: skip
    lines += ["", "| column | shape | dtype | size |", "|---|---|---|---|"]
    for name, (shape, dtype) in md.columns.items():
        nbytes = np.dtype(dtype).itemsize * int(np.prod(shape)) if shape else 0
        lines.append(f"| `{name}` | {shape} | {np.dtype(dtype).name} | {format_size(nbytes)} |")
    lines += ["", "## Episodes", ""]
    lines += ["| | mean | std | min | median | max |", "|---|---:|---:|---:|---:|---:|"]
    for label, values in (("return", table.returns), ("length", table.lengths)):
        d = describe(values)
        lines.append(
            f"| {label} | {d['mean']:.4g} | {d['std']:.4g} | {d['min']:.4g} | "
            f"{d['median']:.4g} | {d['max']:.4g} |"
        )
    lines += ["", f"![episode returns]({image_name})", ""]
    lines += ["## Reference scores", ""]
    record = read_reference_scores(p)
    stored = stored_reference_scores(p)
    if record is not None:
        level = f"{100 * record.confidence:g}%"
        lines += [
            f"Computed for `{record.env_id}` ({record.interval}; seed {record.seed}; "
            f"{record.created}, tianshou-offline {record.package_version}).",
            "",
            f"| reference | mean | {level} interval | std | episodes | source |",
            "|---|---:|---|---:|---:|---|",
        ]
        for name, ref in (("random (ref_min_score)", record.random),
                          ("expert (ref_max_score)", record.expert)):  # fmt: skip
            lines.append(
                f"| {name} | {ref.mean:.6g} | [{ref.ci_low:.6g}, {ref.ci_high:.6g}] | "
                f"{ref.std:.4g} | {ref.episodes} | {_cell(ref.source)} |"
            )
    elif stored is not None:
        lines.append(
            f"ref_min_score (random) {stored[0]:.6g}, ref_max_score (expert) {stored[1]:.6g}, "
            "as stored by the file's converter."
        )
    else:
        lines.append(
            "None stored. Compute them with `tianshou-offline reference-scores FILE --env ID "
            "--expert CKPT` (or `--expert-episodes best-K`)."
        )
    if record is not None or stored is not None:
        lines += ["", "Normalised score of a return R: 100 · (R − ref_min_score) / "
                  "(ref_max_score − ref_min_score)."]  # fmt: skip
    lines += ["", "## Provenance", ""]
    if prov is None:
        lines.append(f"Not recorded (a {md.layout} file read in place).")
    else:
        lines += [
            f"- source: {prov.source}",
            f"- dataset id: {prov.dataset_id or 'not recorded'}",
            f"- converter: {prov.converter} {prov.converter_version} "
            f"(tianshou-offline {prov.package_version})",
            f"- created: {prov.created}",
        ]
        if prov.extra:
            facts = json.dumps(prov.extra, default=str, sort_keys=True)
            lines.append(f"- details: `{facts[:2000]}`" + (" …" if len(facts) > 2000 else ""))
    lines += ["", "## Licence", ""]
    licence = _licence(prov.extra) if prov is not None else None
    lines.append(licence or "Not recorded in the file: ask the data's source.")
    return "\n".join(lines) + "\n"


def write_dataset_card(
    path: str | os.PathLike[str], card: str | os.PathLike[str], *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write the card of the dataset at ``path`` to ``card`` (Markdown) and its return
    histogram to ``CARD_STEM_returns.png`` beside it; both atomically.

    :returns: the card's and the image's paths.
    :raises OutputExistsError: either exists and not ``overwrite``.
    """
    from tianshou_offline.data.atomic import publish, remove_stale_temps, remove_temp, temp_path
    from tianshou_offline.data.stats import episode_table

    out = Path(card)
    image = out.with_name(f"{out.stem}_returns.png")
    for target in (out, image):
        check_new_output(target, overwrite=overwrite)
    text = card_markdown(path, image.name)
    returns = episode_table(path).returns
    temps = []
    try:
        for target in (image, out):
            remove_stale_temps(target)
            temps.append(temp_path(target, "card"))
        histogram_png(returns, temps[0], Path(path).name)
        temps[1].write_text(text, encoding="utf-8")
        publish(temps[0], image, overwrite=overwrite)
        publish(temps[1], out, overwrite=overwrite)
    finally:
        for t in temps:
            remove_temp(t)
    return out, image

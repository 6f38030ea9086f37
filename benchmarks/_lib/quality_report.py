"""The quality table's report (:mod:`benchmarks.quality_table`): the kept runs read back,
the Markdown table with paired differences and Holm-corrected t-tests, the below-BC check,
the rows' data, the sides' differences and the README's section."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._lib import diagnostics, results, stats
from benchmarks._lib.field_map import d3rlpy_differences
from benchmarks._lib.quality_jobs import _as_run
from benchmarks._lib.quality_specs import (
    BENCHMARK,
    D3RLPY_JOBS,
    LINES,
    NOTES,
    ROWS,
    SCALES,
    RowSpec,
    Scale,
    batch_size,
    our_config,
)


def kept_runs(
    scale: Scale, seeds: int, rows: Sequence[RowSpec], results_dir: Path = results.RESULTS_DIR
) -> list[dict[str, Any]]:
    """The kept results of the table's cells at ``scale`` (its preset, gradient steps and
    evaluation episodes) for the seeds below ``seeds``, whatever code they came from (each
    result names its commit and code fingerprint)."""
    keys = {r.key: r for r in rows}
    out = []
    for record in results.read_results(BENCHMARK, results_dir):
        st = record["settings"]
        row = keys.get(st.get("row", ""))
        if (row is None or "line" not in st or st.get("preset") != scale.preset
                or st["seed"] >= seeds
                or st["gradient_steps"] != scale.steps(row.suite, st["algo"])
                or st["eval_episodes"] != scale.eval_episodes):  # fmt: skip
            continue
        out.append({**_as_run(record), "data": st["data"], "record": record})
    return out


def _scores(runs: Sequence[dict[str, Any]], row: str, line: str, side: str) -> dict[int, float]:
    return {r["seed"]: r["score"] for r in runs
            if r["row"] == row and r["line"] == line and r["side"] == side}  # fmt: skip


def _cell(xs: Sequence[float]) -> str:
    return stats.format_mean_se(*stats.mean_se(xs)) if xs else "n/a"


def format_table(
    runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec], alpha: float = 0.05
) -> str:
    """Markdown: one line per (row, algorithm). A paired difference is bold when its t-test
    rejects "no difference" after Holm's correction over every difference of the table
    (family-wise error ``alpha``)."""
    head = ["data", "algorithm", "ours", "d3rlpy", "ours − d3rlpy (paired)", "seeds",
            "train s/run: ours", "d3rlpy"]  # fmt: skip
    lines: list[list[str]] = []
    diffs: list[list[float]] = []
    for row in rows:
        for key, line in LINES[row.suite].items():
            ours = _scores(runs, row.key, key, "ours")
            peer = _scores(runs, row.key, line.peer, "d3rlpy") if line.peer else {}
            if not ours and not peer:
                continue
            paired = [ours[k] - peer[k] for k in sorted(set(ours) & set(peer))]
            secs = [[r["train_seconds"] for r in runs if r["row"] == row.key and r["side"] == s
                     and r["line"] == n] for s, n in (("ours", key), ("d3rlpy", line.peer))]  # fmt: skip
            lines.append([
                row.label, line.label, _cell(list(ours.values())),
                _cell(list(peer.values())) if line.peer else "—",
                _cell(paired), str(max(len(ours), len(peer))),
                *(f"{statistics.fmean(x):.0f}" if x else "n/a" for x in secs),
            ])  # fmt: skip
            diffs.append(paired)
    beyond = stats.holm([stats.t_test(d) for d in diffs], alpha)
    for cells, bold in zip(lines, beyond, strict=True):
        if bold:
            cells[4] = f"**{cells[4]}**"
    out = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    return "\n".join(out + ["| " + " | ".join(c) + " |" for c in lines])


def bc_check(
    runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec], alpha: float = 0.05
) -> list[str]:
    """Our algorithms below our behaviour cloning on ``medium``/``expert`` rows, beyond noise
    (t-tests of the per-seed differences, Holm-corrected over every comparison)."""
    found: list[tuple[str, list[float]]] = []
    for row in rows:
        if row.level not in ("medium", "expert"):
            continue
        bc = _scores(runs, row.key, "il", "ours")
        for key, line in LINES[row.suite].items():
            mine = _scores(runs, row.key, key, "ours") if key != "il" else {}
            d = [mine[k] - bc[k] for k in sorted(set(mine) & set(bc))]
            if d:
                found.append((f"{row.label}: {line.label}", d))
    beyond = stats.holm([stats.t_test(d) for _, d in found], alpha)
    return [f"{label} {stats.format_mean_se(*stats.mean_se(d), sign=True)} below BC"
            for (label, d), b in zip(found, beyond, strict=True)
            if b and statistics.fmean(d) < 0]  # fmt: skip


def describe_rows(runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec]) -> list[str]:
    """Each row's data as its results recorded it: size, the family's reference returns and,
    for a task D4RL has, D4RL's beside them."""
    from tianshou_offline.converters.d4rl_scores import dataset_info

    out = []
    for row in rows:
        data = next((r["data"] for r in runs if r["row"] == row.key), None)
        if data is None:
            continue
        ref = f"reference returns random {data['ref_min']:.1f}, expert {data['ref_max']:.1f}"
        if row.d4rl is not None:
            d4rl = dataset_info(row.d4rl)
            share = 100 * data["ref_max"] / d4rl.ref_max_score
            ref += (f" — D4RL's `{row.d4rl}`: random {d4rl.ref_min_score:.1f}, expert "
                    f"{d4rl.ref_max_score:.1f} (this family's expert: {share:.0f}% of D4RL's)")  # fmt: skip
        else:
            ref += " (D4RL has no such task)"
        out.append(f"- {row.label}: {data['transitions']:,} transitions, "
                   f"{data['episodes']:,} episodes; {ref} (`{data['name']}`)")  # fmt: skip
    return out


def coverage(runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec], seeds: int) -> str:
    """The cells of ``rows`` the kept results leave empty or short of ``seeds`` seeds: a
    table cut short says so rather than dropping them silently."""
    missing: list[str] = []
    for row in rows:
        gaps = []
        for key, line in LINES[row.suite].items():
            have = [len(_scores(runs, row.key, key, "ours"))]
            if line.peer is not None:
                have.append(len(_scores(runs, row.key, line.peer, "d3rlpy")))
            if max(have) == 0:
                gaps.append((line.label, "not run"))
            elif min(have) < seeds:
                gaps.append((line.label, f"{min(have)} of {seeds} seeds"))
        if len(gaps) == len(LINES[row.suite]) and all(g[1] == "not run" for g in gaps):
            missing.append(f"{row.label} (every line)")
        else:
            missing += [f"{row.label} {label} ({what})" for label, what in gaps]
    return "Not in the table (no kept results at this code's settings): " + (
        "; ".join(missing) or "none"
    )


_UNRECORDED = "not recorded"


def settings_changed(runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec], scale: Scale) -> str:
    """Our cells whose kept results were trained with settings other than those the preset
    builds now (the config's fields, with the row's overrides; a field a result does not
    record counts as changed): the table shows each cell's newest kept results whatever code
    they came from, and names these rather than passing them off as the preset's."""
    labels = {r.key: r.label for r in rows}
    found: dict[str, dict[str, str]] = {}
    for run in runs:
        st = run["record"]["settings"]
        if run["side"] != "ours" or run["row"] not in labels:
            continue
        config = our_config(scale, st["suite"], st["algo"], **st.get("overrides", {}))
        now = json.loads(json.dumps(config.hyperparameters()))  # as a result records it
        kept: dict[str, Any] = st.get("hp", {})
        cell = f"{labels[run['row']]} {LINES[st['suite']][run['line']].label}"
        for field in sorted(now.keys() | kept.keys()):
            was, is_ = kept.get(field, _UNRECORDED), now.get(field, _UNRECORDED)
            if was != is_:
                found.setdefault(cell, {}).setdefault(field, f"{field}: {was} → {is_}")
    return "Ours kept at settings other than the preset's now (shown until rerun): " + (
        "; ".join(f"{cell} ({', '.join(d.values())})" for cell, d in found.items()) or "none"
    )


def notes(scale: Scale) -> list[str]:
    """What the sides still do differently: :data:`NOTES` and the field map's differences."""
    found = [*NOTES]
    for suite, jobs in D3RLPY_JOBS.items():
        for key in jobs:
            config = our_config(scale, suite, jobs[key])
            found += [d for d in d3rlpy_differences(config) if d not in found]
    return found


def batched_note(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Which of our lines were trained as seed batches (from the results)."""
    k = sorted({int(r.get("seed_batch", 1)) for r in runs if r["side"] == "ours"} - {1})
    lines = sorted({LINES[r["record"]["settings"]["suite"]][r["line"]].label for r in runs
                    if r["side"] == "ours" and r.get("seed_batch", 1) > 1})  # fmt: skip
    if not lines:
        return []
    return [
        f"- Ours, {', '.join(lines)}: a row's {'/'.join(map(str, k))} seeds trained as one seed "
        "batch in one process (make_seed_batch: seed k's trajectory is the single run's after "
        "torch.manual_seed(k)); their train s/run is the batch's wall time / its seeds"
    ]


def _caption_nets(scale: Scale) -> str:
    cont = our_config(scale, "continuous", "il").hyperparameters()
    disc = our_config(scale, "discrete", "il").hyperparameters()

    def x(sizes: Sequence[int]) -> str:
        return "×".join(map(str, sizes))

    return (f"continuous networks {x(cont['hidden_sizes'])}, discrete trunk "
            f"{x(disc['trunk_sizes'])} + head {x(disc['hidden_sizes'])}")  # fmt: skip


def _caption_step_overrides(scale: Scale) -> str:
    """The budgets the scale sets per algorithm, e.g. the Decision Transformer's (its batch:
    segments of ``context`` steps)."""
    out = ""
    for key, steps in scale.step_overrides.items():
        suite, _, algo = key.rpartition("/")
        suite = suite or "continuous"
        hp = our_config(scale, suite, algo).hyperparameters()
        unit = f" segments of {hp['context']} steps" if "context" in hp else ""
        label = LINES[suite][algo].label if algo in LINES[suite] else algo
        where = f" ({suite})" if key.count("/") else ""
        out += f", {label}{where} {steps:,} (batch {batch_size(scale, suite, algo)}{unit})"
    return out


def report(
    runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec], scale: Scale, seeds: int,
    measured: Sequence[str] = (),
) -> str:  # fmt: skip
    """The table with its caption, data, below-BC check, the sides' differences and
    ``measured`` (what :mod:`benchmarks.quality_diagnostics` found of them) (the README's
    section)."""
    n_cells = format_table(runs, rows).count("\n") - 1
    return "\n".join([
        f"Learning quality, scale `{scale.name}`: score 100 · (R − R_random) / (R_expert − "
        "R_random) with each family's own reference returns (listed under the table beside "
        "D4RL's: not D4RL-normalised scores), mean ± s.e. over "
        f"{seeds} pre-registered seeds per cell (0–{seeds - 1}); bold: the paired difference is "
        f"nonzero by a Student-t test with Holm's correction over the table's {n_cells} "
        "differences (family-wise 5%). Settings: the preset "
        f"`{scale.preset}` on both sides (d3rlpy's through the benchmarks' field map); budgets: "
        f"{scale.gradient_steps['continuous']:,} gradient steps (continuous, batch "
        f"{batch_size(scale, 'continuous', 'il')}) / {scale.gradient_steps['discrete']:,} "
        f"(discrete, batch {batch_size(scale, 'discrete', 'il')}) per run"
        + _caption_step_overrides(scale) + f"; {_caption_nets(scale)}; "
        f"{scale.eval_episodes} evaluation episodes per run; CRR evaluated with both acting "
        "rules on both sides (its two lines: the same trained networks); families: "
        + ", ".join(f"{e} {b:,} online steps" for e, b in scale.online_budget.items())
        + f", {scale.dataset_steps:,} transitions per recorded file (D4RL: 1M).",
        "",
        format_table(runs, rows),
        "",
        "Data:",
        *(describe_rows(runs, rows) or ["- (no kept results)"]),
        "",
        coverage(runs, rows, seeds),
        "",
        settings_changed(runs, rows, scale),
        "",
        "Below behaviour cloning (medium/expert; t-tests, Holm-corrected): "
        + ("; ".join(bc_check(runs, rows)) or "none"),
        "",
        "Where the sides differ, and how each acts:",
        *(f"- {n}" for n in notes(scale)),
        *batched_note(runs),
        *(["", "Which difference explains a gap (d3rlpy with one removed):",
           *(f"- {n}" for n in measured)] if measured else []),
        "",
        results.provenance_line([r["record"] for r in runs]),
    ])  # fmt: skip


def gap_notes(results_dir: Path = results.RESULTS_DIR) -> list[str]:
    """The table's notes on its HalfCheetah-medium gaps, from the kept diagnostics: the
    bound-action shares and each variant's score beside the table's two cells (same seeds)."""
    records = results.read_results(diagnostics.BENCHMARK, results_dir)
    if not records:
        return []
    out = []
    bounds = next((r for r in records if r["name"] == "small.bounds"), None)
    if bounds is not None:
        f = bounds["figures"]
        share = {k: 100 * f[k][f"share_above_{diagnostics.BOUND}"] for k in f}
        out.append(
            f"Action elements within {1 - diagnostics.BOUND:.2f} of the bounds ±1 in the medium files: "
            f"HalfCheetah {share['halfcheetah-medium']:.1f}%, Hopper {share['hopper-medium']:.1f}% "
            "(`python -m benchmarks.quality_diagnostics --bounds`)"
        )
    scale = SCALES["small"]
    rows = sorted({v[0] for v in diagnostics.VARIANTS.values()})
    runs = kept_runs(scale, scale.seeds, [ROWS[k] for k in rows], results_dir)
    for variant, scores in sorted(diagnostics.kept(results_dir).items(),
                                  key=lambda kv: list(diagnostics.VARIANTS).index(kv[0])):  # fmt: skip
        row_key, _, line, removed, _ = diagnostics.VARIANTS[variant]
        row = ROWS[row_key]
        seeds = sorted(scores)
        cells = []
        for side, name in (("d3rlpy", LINES[row.suite][line].peer), ("ours", line)):
            table = _scores(runs, row_key, str(name), side)
            cells.append(f"{side} {_cell([table[k] for k in seeds if k in table])}")
        out.append(
            f"{row.env.split('-')[0]} {row.level}, d3rlpy's {removed}: "
            f"{_cell([scores[k] for k in seeds])} "
            f"at seeds {', '.join(map(str, seeds))}, where the table's cells are "
            f"{', '.join(cells)} (`python -m benchmarks.quality_diagnostics --variants {variant}`)"
            + (f": {diagnostics.FINDINGS[variant]}" if variant in diagnostics.FINDINGS else "")
        )
    return out


def readme_section(results_dir: Path = results.RESULTS_DIR) -> str:
    """The README's section: the small scale's table over every row, from the kept results."""
    scale = SCALES["small"]
    rows = list(ROWS.values())
    runs = kept_runs(scale, scale.seeds, rows, results_dir)
    return report(runs, rows, scale, scale.seeds, gap_notes(results_dir))

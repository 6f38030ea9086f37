"""A grid's table: :func:`aggregate` (mean ± standard error over seeds per cell group),
Markdown and CSV, the learning curves (``curves.png``) and :func:`write_report`; see
:mod:`tianshou_offline.scale.grid` (which re-exports them)."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tianshou_offline.data.atomic import (
    atomic_output,
)
from tianshou_offline.scale.grid_spec import (
    _write_atomic,
)
from tianshou_offline.scale.stats import format_mean_se, mean_se

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the table


def aggregate(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell group (every cell but its seed), in order of first appearance:
    ``group``, ``algorithm``, ``dataset``, ``overrides``, ``seeds``, ``return_mean``,
    ``return_se`` (:func:`~tianshou_offline.scale.stats.mean_se`: None for one seed),
    ``score_mean``/``score_se`` (None unless every seed has a score),
    ``gradient_steps``, ``train_seconds`` (mean)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        groups.setdefault(str(r["group"]), []).append(r)
    rows: list[dict[str, Any]] = []
    for group, rs in groups.items():
        spec = rs[0]["spec"]
        ret_mean, ret_se = mean_se([float(r["final_return_mean"]) for r in rs])
        scores = [r["normalized_score"] for r in rs]
        have = all(s is not None for s in scores)
        score_mean, score_se = mean_se([float(s) for s in scores]) if have else (None, None)
        rows.append({
            "group": group, "algorithm": spec["algorithm"], "dataset": spec["dataset"],
            "overrides": spec["overrides"], "seeds": sorted(int(r["spec"]["seed"]) for r in rs),
            "return_mean": ret_mean, "return_se": ret_se,
            "score_mean": score_mean, "score_se": score_se,
            "gradient_steps": int(rs[0]["gradient_steps"]),
            "train_seconds": float(np.mean([float(r["train_seconds"]) for r in rs])),
        })  # fmt: skip
    return rows


def format_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table as Markdown: mean ± standard error over seeds."""
    lines = [
        "| cell group | seeds | final return | normalised score | gradient steps | train s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        score = (format_mean_se(r["score_mean"], r["score_se"]) if r["score_mean"] is not None
                 else "—")  # fmt: skip
        ret = format_mean_se(r["return_mean"], r["return_se"])
        lines.append(
            f"| {r['group']} | {len(r['seeds'])} | {ret} "
            f"| {score} | {r['gradient_steps']} | {r['train_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    cols = ["group", "algorithm", "dataset", "overrides", "seeds", "return_mean", "return_se",
            "score_mean", "score_se", "gradient_steps", "train_seconds"]  # fmt: skip
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "overrides": json.dumps(r["overrides"], sort_keys=True),
                    "seeds": " ".join(map(str, r["seeds"]))})  # fmt: skip
    return buf.getvalue()


def plot_curves(results: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Learning curves (mean test return against gradient steps; mean ± standard error over
    seeds) per cell group, one panel per dataset; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_ds: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for r in results:
        by_ds.setdefault(Path(r["spec"]["dataset"]).stem, {}).setdefault(r["group"], []).append(r)
    fig, axes = plt.subplots(1, len(by_ds), figsize=(5 * len(by_ds), 3.6), squeeze=False)
    for ax, (ds, groups) in zip(axes[0], by_ds.items(), strict=True):
        for group, rs in groups.items():
            n = min(len(r["curve"]) for r in rs)
            if n == 0:
                continue
            steps = np.array([p[0] for p in rs[0]["curve"][:n]])
            ys = np.array([[p[1] for p in r["curve"][:n]] for r in rs])
            mean = ys.mean(axis=0)
            label = group.rsplit(" on ", 1)[0]
            ax.plot(steps, mean, label=f"{label} ({len(rs)} seeds)")
            if len(rs) > 1:  # one seed has no spread: no band
                se = ys.std(axis=0, ddof=1) / math.sqrt(len(rs))
                ax.fill_between(steps, mean - se, mean + se, alpha=0.2)
        ax.set_title(ds)
        ax.set_xlabel("gradient steps")
        ax.set_ylabel("test return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        with atomic_output(path, overwrite=True, tag="png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def write_report(
    results: Sequence[Mapping[str, Any]], output: str | os.PathLike[str]
) -> dict[str, Path]:
    """``results.md``, ``results.csv``, ``results.json`` (rows and cells) and ``curves.png``
    in ``output`` (each replaced atomically: they are the grid's current state)."""
    out = Path(output)
    rows = aggregate(results)
    files = {"markdown": out / "results.md", "csv": out / "results.csv",
             "json": out / "results.json", "plot": out / "curves.png"}  # fmt: skip
    _write_atomic(files["markdown"], format_markdown(rows).encode())
    _write_atomic(files["csv"], _csv(rows).encode())
    cells = [{k: v for k, v in r.items() if k != "skipped"} for r in results]
    _write_atomic(files["json"], json.dumps({"rows": rows, "cells": cells}, indent=1).encode())
    if results:
        plot_curves(results, files["plot"])
    else:
        files.pop("plot")
    return files

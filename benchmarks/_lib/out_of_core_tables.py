"""The out-of-core benchmark's tables (:mod:`benchmarks.out_of_core` ``table``), from its
kept results: the training run, the I/O-bound configuration and the continuous pixel row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks._lib import results
from benchmarks._lib.atari_frames import GB

BENCHMARK = "out_of_core"


def pixels_table(record: dict[str, Any]) -> str:
    """The continuous pixel row's table."""
    f = record["figures"]
    med = f["median_per_second"]
    lines = [
        "| continuous pixels | per second (median) | min–max over rounds | RAM added per transition |",
        "|---|---:|---:|---:|",
    ]
    for side, values in f["per_second"].items():
        where, what = side.split()
        unit = "batches" if what == "sample" else "TD3+BC steps"
        lines.append(
            f"| {where} {unit} | {med[side]:,.2f} | {min(values):,.2f}–{max(values):,.2f} | "
            f"{f['anon_bytes_per_transition'][where]:,.0f} B |"
        )
    c, h, w = f["obs_shape"]
    lines += [
        "",
        f"{f['transitions']:,} transitions of {c}×{h}×{w} uint8 images "
        f"({f['data_bytes'] / 1e6:,.0f} MB), TD3+BC with a convolutional encoder per network, "
        f"batch {f['batch']}; {f['rounds']} rounds of {f['steps_per_block']} steps / "
        f"{f['batches_per_block']} batches per side, the order rotated every round, the disk "
        f"side's blocks from a cold cache. Disk ÷ RAM (medians of per-round ratios): sampling "
        f"{f['disk_over_ram']['sample']:.2f}×, gradient steps {f['disk_over_ram']['step']:.2f}×. "
        f"RAM added: `RssAnon` grown by loading and building the dataset, model built "
        f"before ({f['datasets']['disk']}: {f['anon_bytes']['disk'] / 1e6:,.0f} MB vs "
        f"{f['datasets']['ram']}: {f['anon_bytes']['ram'] / 1e6:,.0f} MB).",
    ]
    return "\n".join(lines)


def io_table(record: dict[str, Any]) -> str:
    """The I/O-bound configuration's table: every side's batches/s (median and range over the
    rounds), reads/s and its ratio to the physical limit."""
    f = record["figures"]
    med = f["median_batches_per_s"]
    limit = f["limit"]
    batch = f["batch"]
    lines = [
        "| side | batches/s (median) | min–max over rounds | reads/s | ÷ disk limit | MB read per block |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for side, rates in f["batches_per_s"].items():
        ratio = float(
            np.median([a / b for a, b in zip(rates, f["batches_per_s"][limit], strict=True)])
        )
        lines.append(
            f"| {side}{' (the limit)' if side == limit else ''} | {med[side]:,.1f} | "
            f"{min(rates):,.0f}–{max(rates):,.0f} | {med[side] * batch:,.0f} | {ratio:.2f}× | "
            f"{np.median(f['storage_mb_per_block'][side]):,.0f} |"
        )
    ach = f["median_achieved_over_limit"]
    d_r = f["disk_over_ram"]
    cached = [c for side in f["cached_mb_at_block_start"] if side.split()[0] in ("disk", "pread")
              for c in f["cached_mb_at_block_start"][side] if c is not None]  # fmt: skip
    cold = f"at most {max(cached):.1f} MB of the shards cached at a block's start" if cached else ""
    lines += [
        "",
        f"{f['transitions']:,} transitions, {f['data_bytes'] / GB:.1f} GB in {f['shards']} "
        f"shards on a machine with {f['mem_total'] / GB:.1f} GB of RAM; blocks of "
        f"{f['batches_per_block']} mini-batches of {batch} ({f['reads_per_block']:,} reads of "
        f"{f['read_bytes_each'] / 1e3:.1f} kB: the 5 frames a transition's stack and next stack "
        f"cover), {len(f['orders'])} rounds in an order rotated every round; cold cache: "
        f"{f['cold_cache']} ({cold}). RAM side: the first {f['ram_transitions']:,} "
        f"transitions in memory. Ratios are medians of the per-round ratios; MB read from "
        f"storage per block by this process and its children (`/proc/self/io`).",
        "",
        f"Sampling from disk reaches **{ach['disk sample']:.2f}× the disk's own random-read "
        f"rate** for its pattern ({limit}) and {d_r['sample']:.2f}× sampling from RAM; with the "
        f"small network's gradient step on each batch, {ach['disk net']:.2f}× the limit and "
        f"{d_r['net']:.2f}× the same training from RAM.",
    ]
    return "\n".join(lines)


def table(records: Sequence[dict[str, Any]]) -> str:
    """The kept results' tables (the I/O-bound configuration; the training runs)."""
    parts = []
    for r in records:
        if r["name"].startswith("io-"):
            parts.append(io_table(r))
        elif r["name"].startswith("pixels-"):
            parts.append(pixels_table(r))
        else:
            f, st = r["figures"], r["settings"]
            parts.append(
                f"Training run: DiscreteCQL (Atari QR-DQN net, batch 32, {f['threads']} thread(s)) "
                f"on {f['transitions']:,} transitions, {f['data_bytes'] / GB:.1f} GB in "
                f"{f['shards']} shards (RAM {f['mem_total'] / GB:.1f} GB); the RAM side the first "
                f"{f['ram_transitions']:,} in memory; {st['rounds']} rounds of {st['block']} steps "
                f"per side, which side goes first alternating. {f['first_step_s']:.1f} s from "
                f"loading to the first gradient step; {f['disk_anon_peak_beyond_model'] / GB:.2f} "
                f"GB resident beyond the model (peak `RssAnon`, "
                f"{f['disk_bytes_per_transition']:.0f} B per transition); steps/s from disk "
                f"{f['disk_steps_per_s']:.1f} vs RAM {f['ram_steps_per_s']:.1f}: "
                f"**{f['ratio_disk_over_ram']:.2f}×** (target ≥ 0.8; per round "
                f"{min(f['ratios_per_round']):.2f}–{max(f['ratios_per_round']):.2f}), from a cold "
                f"cache {f['cold_steps_per_s']:.1f} ({f['cold_ratio_over_ram']:.2f}×); χ² of the "
                f"sampled positions over shards p = {f['chi2_pvalue_over_shards']:.2f} (a rotation "
                f"of {f['rotation_shards']} shard(s): p = {f['chi2_pvalue_rotation']:.2g})."
            )
    parts.append(results.provenance_line(records))
    return "\n\n".join(parts)

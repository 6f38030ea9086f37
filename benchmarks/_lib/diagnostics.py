"""What the quality table's diagnostics (:mod:`benchmarks.quality_diagnostics`) ran and keep:
the variants, what their kept runs showed, and reading those runs. Shared by the diagnostics
script and the table's notes (:func:`benchmarks.quality_table.gap_notes`), so that neither
imports the other's module for it."""

from __future__ import annotations

from pathlib import Path

from benchmarks._lib import results

BENCHMARK = "quality_diagnostics"
BOUND = 0.99
"""An action element with ``|a| > BOUND`` counts as at the bounds ±1."""

VARIANTS: dict[str, tuple[str, str, str, str, str]] = {
    # name: (the table's row, d3rlpy job of the table, its line, what is removed, the patch:
    # "no-temperature", "unsquashed-mean", "layernorm-embeddings" or "default-init", see quality_diagnostics._patch)
    "awac-no-temperature": ("halfcheetah-medium", "awac", "awac", "AWAC with its critic target's − log π removed (temperature 0)", "no-temperature"),
    "awac-unsquashed-mean": ("halfcheetah-medium", "awac", "awac", "AWAC with its Gaussian around μ, not tanh(μ)", "unsquashed-mean"),
    "crr-unsquashed-mean": ("halfcheetah-medium", "crr", "crr", "CRR (actor mean) with its Gaussian around μ, not tanh(μ)", "unsquashed-mean"),
    "awac-no-temperature-hopper-medium-replay": ("hopper-medium-replay", "awac", "awac", "AWAC with its critic target's − log π removed (temperature 0)", "no-temperature"),
    "crr-cwp-unsquashed-mean-expert": ("halfcheetah-expert", "crr", "crr-cwp", "CRR (critic-weighted) with its Gaussian around μ, not tanh(μ)", "unsquashed-mean"),
    "dt-layernorm-embeddings-cartpole": ("cartpole-medium", "dt", "dt", "Decision Transformer with a LayerNorm (ours) in place of its tanh on the token embeddings", "layernorm-embeddings"),
    "dt-default-init-cartpole": ("cartpole-medium", "dt", "dt", "Decision Transformer initialised as PyTorch's layers are by default (as ours was before its default became GPT-2's), not N(0, 0.02)", "default-init"),
}  # fmt: skip

FINDINGS: dict[str, str] = {
    "awac-no-temperature": "the cause of the AWAC gap — without SAC's entropy term d3rlpy's "
    "AWAC scores as ours (why the term costs HalfCheetah and not Hopper is not measured here)",
    "crr-unsquashed-mean": "most of the CRR actor-mean gap — with a Gaussian around μ "
    "d3rlpy's CRR comes within a few points of ours (the rest is not separated from noise "
    "here); an action within 0.01 of ±1 needs |μ| > 2.6 under tanh, where tanh's slope is "
    "below 0.02",
    "awac-no-temperature-hopper-medium-replay": "the cause of this row's AWAC gap too — "
    "without SAC's entropy term d3rlpy's AWAC scores as ours",
    "crr-cwp-unsquashed-mean-expert": "the cause of the critic-weighted gap on this row — "
    "with a Gaussian around μ d3rlpy's critic-weighted CRR scores as ours (both sides near the "
    "random policy's score here)",
    "dt-default-init-cartpole": "most of the discrete Decision Transformer's gap while ours "
    "was initialised with PyTorch's defaults (its cell then: 55.6 ± 3.2 at these seeds; the gap "
    "not beyond noise after Holm's correction) — initialised as ours was, d3rlpy's scores "
    "within a few points of it; why ours now initialises as GPT-2 (DiscreteDTConfig's "
    "init_std 0.02), as d3rlpy and the authors' Atari code",
    "dt-layernorm-embeddings-cartpole": "not the gap's cause — with a LayerNorm in place of its "
    "tanh d3rlpy's discrete Decision Transformer scores as in the table (one seed: the run was "
    "stopped when seed 0 showed no effect, to give the machine to the next variant)",
    "awac-unsquashed-mean": "not the AWAC gap's cause — with a Gaussian around μ and the "
    "critic target unchanged d3rlpy's AWAC scores as in the table",
}
"""variant → what its kept runs show (printed after their figures in the notes)."""


def kept(results_dir: Path = results.RESULTS_DIR) -> dict[str, dict[int, float]]:
    """variant → seed → score of the kept runs."""
    out: dict[str, dict[int, float]] = {}
    for r in results.read_results(BENCHMARK, results_dir):
        if "variant" in r["settings"]:
            out.setdefault(r["settings"]["variant"], {})[r["seeds"][0]] = r["figures"]["score"]
    return out

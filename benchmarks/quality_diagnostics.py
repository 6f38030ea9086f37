"""Which difference between the sides explains a quality-table gap: d3rlpy 2.8.1 trained as
the table trains it, with one of its known differences from ours removed.

The quality table (:mod:`benchmarks.quality_table`) lists what d3rlpy's algorithms still do
differently from ours (:func:`benchmarks._lib.field_map.d3rlpy_differences`). Each variant
here removes one of them in d3rlpy's own process (a patch of d3rlpy's class, nothing else
changes: same job, same data, same seeds, same evaluation as the table's d3rlpy cell):

- ``awac-no-temperature``: AWAC's critic target without SAC's ``− log π(a'|s')`` term
  (temperature 0; the next action still tanh-squashed);
- ``awac-unsquashed-mean``: AWAC's Gaussian around μ instead of tanh(μ) (log-likelihoods and
  acting), the critic target unchanged;
- ``crr-unsquashed-mean``: CRR's Gaussian around μ instead of tanh(μ), acting with the
  actor's mean (the table's ``crr`` line);
- ``dt-layernorm-embeddings-cartpole``: the discrete Decision Transformer with a LayerNorm
  over each token's embedding (ours normalizes its tokens so) in place of its tanh; with the
  returns-to-go unscaled (the preset's ``rtg_scale`` 1: CartPole's reach 500) either one
  bounds the return token, and a LayerNorm keeps only the direction of ``w · R̂ + b``;
- ``dt-default-init-cartpole``: the discrete Decision Transformer's layers initialised as
  PyTorch initialises them (the timestep embedding N(0, 1), linear layers uniform in
  ±1/√fan-in: ours with ``init_std=None``, its default when this ran) instead of GPT-2's
  N(0, 0.02) weights and zero biases; what it found is why ``DiscreteDTConfig`` now
  initialises as GPT-2 (``init_std=0.02``).

Each run keeps one result file (:func:`benchmarks._lib.results.write_result`) under
``benchmarks/results/quality_diagnostics/``; :func:`summary` reads them for the table's notes.

    python -m benchmarks.quality_diagnostics --variants awac-no-temperature --seeds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._lib import results
from benchmarks._lib.diagnostics import BENCHMARK, BOUND, VARIANTS, kept
from benchmarks._lib.peers import D3RLPY_VERSION, child_env, d3rlpy_python
from benchmarks._lib.quality_jobs import make_jobs
from benchmarks._lib.quality_specs import DEFAULT_DATA_DIR, ROWS, SCALES

CODE = ("benchmarks/quality_diagnostics.py", "benchmarks/quality_table.py", "benchmarks/_lib")


def _patch(variant: str) -> None:
    """In d3rlpy's process: remove the variant's difference from d3rlpy's classes."""
    import torch
    from d3rlpy.algos.qlearning.torch import awac_impl
    from d3rlpy.models.torch import policies

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    patch = VARIANTS[variant][4]
    if patch == "unsquashed-mean":
        forward = policies.NormalPolicy.forward

        def unsquashed(self: Any, x: Any, *args: Any) -> Any:
            out = forward(self, x, *args)
            return policies.ActionOutput(out.mu, out.mu, out.logstd)

        setattr(policies.NormalPolicy, "forward", unsquashed)  # noqa: B010  (a patch)
    elif patch == "no-temperature":

        def compute_target(self: Any, batch: Any) -> torch.Tensor:
            with torch.no_grad():
                dist = policies.build_squashed_gaussian_distribution(
                    self._modules.policy(batch.next_observations)
                )
                target: torch.Tensor = self._targ_q_func_forwarder.compute_target(
                    batch.next_observations, dist.sample(), reduction="min"
                )
                return target

        setattr(awac_impl.AWACImpl, "compute_target", compute_target)  # noqa: B010  (a patch)
    elif patch == "layernorm-embeddings":
        from d3rlpy.models.torch import transformers

        init = transformers.DiscreteDecisionTransformer.__init__

        def with_layernorm(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)  # built before the optimizer: it trains the norm too
            self._embed_activation = torch.nn.LayerNorm(self._rtg_embed.out_features)

        setattr(transformers.DiscreteDecisionTransformer, "__init__", with_layernorm)  # noqa: B010
    elif patch == "default-init":
        from d3rlpy.models.torch import transformers

        init_dt = transformers.DiscreteDecisionTransformer.__init__

        def default_init(self: Any, *args: Any, **kwargs: Any) -> None:
            init_dt(self, *args, **kwargs)  # its N(0, 0.02), then PyTorch's (init_std=None)
            for part in (self._position_encoding, self._gpt2, self._output, self._action_embed):
                for m in part.modules():
                    if isinstance(m, torch.nn.Linear | torch.nn.Embedding | torch.nn.LayerNorm):
                        m.reset_parameters()

        setattr(transformers.DiscreteDecisionTransformer, "__init__", default_init)  # noqa: B010
    else:
        raise ValueError(f"variant {variant!r}: unknown patch {patch!r}")


def worker(spec_path: str) -> None:
    """In d3rlpy's environment: the table's d3rlpy worker with the variant's patch."""
    from benchmarks._lib.quality_d3rlpy import worker_d3rlpy

    spec = json.loads(Path(spec_path).read_text())
    _patch(spec["variant"])
    worker_d3rlpy(spec)


def run(variant: str, seed: int, results_dir: Path, d3rlpy: str, data_dir: Path) -> Path:
    """Train and evaluate one seed of ``variant``; keep its result; return its path."""
    row_key, job_key, line, removed, _ = VARIANTS[variant]
    row = ROWS[row_key]
    scale = SCALES["small"]
    files = {row_key: data_dir / scale.name / row.env / f"{row.level}.hdf5"}  # read only
    jobs = make_jobs([row], files, {}, scale=scale, seeds=seed + 1, algorithms=[line],
                     sides=["d3rlpy"], device="cpu")  # fmt: skip
    (job,) = [j for j in jobs if j.algo == job_key and j.seeds == (seed,)]
    with results.LoadMonitor() as load, tempfile.TemporaryDirectory(prefix="qdiag_") as tmp:
        spec = {**job.spec, "workdir": tmp, "variant": variant,
                "outputs": {line: job.spec["outputs"][line]}}  # fmt: skip
        path = Path(tmp) / "job.json"
        path.write_text(json.dumps(spec))
        log = Path(tmp) / "log.txt"
        for argv in (
            [d3rlpy, "-m", "benchmarks.quality_diagnostics", "--worker", str(path)],
            [sys.executable, "-m", "benchmarks.quality_table", "--worker", "evaluate", str(path)],
        ):
            with open(log, "a") as f:
                proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT,
                                      env=child_env(1), cwd=tmp)  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"{variant} seed {seed} failed:\n{log.read_text()[-3000:]}")
        figures = json.loads((Path(tmp) / "result.json").read_text())[str(seed)][line]
    settings = {**job.settings(line, seed), "variant": variant, "removed": removed}
    return results.write_result(
        BENCHMARK, f"small.{row_key}.{variant}.d3rlpy.{seed}", settings=settings, figures=figures,
        code=CODE, seeds=[seed], data={row_key: job.spec["file_sha256"]}, load=load,
        d3rlpy=D3RLPY_VERSION, results_dir=results_dir,
    )  # fmt: skip


"""|a| above which an action element counts as at the bounds (±1)"""


def measure_bounds(data_dir: Path, results_dir: Path) -> Path:
    """Keep, for the medium files of Hopper and HalfCheetah, the share of action elements
    with |a| > :data:`BOUND` (and > 0.9, and exactly ±1): how often the data sits where
    tanh(μ) needs a large μ (d3rlpy's Gaussian mean)."""
    import h5py
    import numpy as np

    figures, data = {}, {}
    with results.LoadMonitor() as load:
        for key in ("hopper-medium", "halfcheetah-medium"):
            row = ROWS[key]
            path = data_dir / "small" / row.env / f"{row.level}.hdf5"
            with h5py.File(path, "r") as f:  # read only
                a = np.abs(np.asarray(f["_meta/act"], dtype=np.float64))
            figures[key] = {
                "elements": int(a.size),
                f"share_above_{BOUND}": float((a > BOUND).mean()),
                "share_above_0.9": float((a > 0.9).mean()),
                "share_at_1": float((a >= 1.0).mean()),
                "max_abs": float(a.max()),
            }
            data[key] = results.file_sha256(path)
    return results.write_result(
        BENCHMARK, "small.bounds", settings={"scale": "small", "bound": BOUND,
                                             "rows": sorted(figures)},
        figures=figures, code=CODE, data=data, load=load, results_dir=results_dir,
    )  # fmt: skip


def summary(results_dir: Path = results.RESULTS_DIR) -> dict[str, str]:
    """variant → "mean ± standard error (n seeds)" of its kept scores."""
    out = {}
    for variant, scores in kept(results_dir).items():
        xs = [scores[s] for s in sorted(scores)]
        se = statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan")
        out[variant] = f"{statistics.mean(xs):.1f} ± {se:.1f} ({len(xs)} seeds)"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seeds", type=int, default=3,
                   help="seeds 0..N-1 (the table's first N; kept ones are not rerun)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="only this seed (< --seeds)")
    p.add_argument("--results", type=Path, default=results.RESULTS_DIR)
    p.add_argument("--d3rlpy-python", default=None)
    p.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="the table's families (read)"
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--bounds", action="store_true", help="only keep the bound-action shares")
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if args.bounds:
        print(measure_bounds(args.data_dir, args.results))
        return 0
    import torch

    d3rlpy = d3rlpy_python(args.d3rlpy_python, create=False, torch_version=torch.__version__)
    if d3rlpy is None:
        p.error("no d3rlpy 2.8.1 interpreter (--d3rlpy-python)")
    for variant in args.variants.split(","):
        done = kept(args.results).get(variant, {})
        todo = [s for s in range(args.seeds) if s not in done and args.seed in (None, s)]
        for seed in todo:  # kept seeds are not rerun
            print(run(variant, seed, args.results, d3rlpy, args.data_dir), flush=True)
    for variant, line in summary(args.results).items():
        print(f"{variant}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The quality table's jobs (:mod:`benchmarks.quality_table`): one training run of a side,
a row, a line and its seeds; run in processes of their own (locally or as Ray tasks), each
result kept under ``benchmarks/results/quality_table/`` and reused while the code is the
same."""

from __future__ import annotations

import concurrent.futures
import functools
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._lib import results
from benchmarks._lib.peers import D3RLPY_VERSION, child_env, d3rlpy_python
from benchmarks._lib.quality_data import _sha256, arrays_path
from benchmarks._lib.quality_specs import (
    BENCHMARK,
    CODE,
    D3RLPY_JOBS,
    LINES,
    RowSpec,
    Scale,
    batch_size,
    d3rlpy_spec,
    our_config,
    row_overrides,
)

if TYPE_CHECKING:
    from tianshou_offline.algorithms.config import AlgorithmConfig


@dataclass(frozen=True)
class Job:
    """One training run (a side, a row, an algorithm, its seeds) and its evaluations: one
    kept result per seed and line of :attr:`outputs` (CRR: two acting rules of the same
    networks). Our side trains a cell's seeds as one seed batch where the algorithm has one
    (:func:`~tianshou_offline.algorithms.make_seed_batch`: seed k's trajectory is a single
    run's with ``torch.manual_seed(k)``), else one seed per job."""

    row: str
    algo: str
    """Ours: the preset entry trained (``crr``, ``cql-dqn``); d3rlpy: its line key."""
    side: str
    """``ours`` or ``d3rlpy``."""
    seeds: tuple[int, ...]
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        """scale.row.algorithm.side.seeds (the run's name in progress lines)."""
        seeds = (
            "-".join(map(str, (self.seeds[0], self.seeds[-1])))
            if len(self.seeds) > 1
            else self.seeds[0]
        )
        return f"{self.spec['scale']}.{self.row}.{self.algo}.{self.side}.{seeds}"

    @property
    def outputs(self) -> dict[str, str]:
        """The lines this run's evaluations are kept as → their acting rule."""
        out: dict[str, str] = self.spec["outputs"]
        return out

    def result_name(self, line: str, seed: int) -> str:
        """The kept result's name of ``line`` and ``seed``: scale, row, line, side, seed."""
        return f"{self.spec['scale']}.{self.row}.{line}.{self.side}.{seed}"

    def settings(self, line: str, seed: int) -> dict[str, Any]:
        """The settings of ``line``'s result of ``seed``: the spec without this machine's
        paths (the data is in it by its hash), the other outputs and seeds, with the seed,
        the line and its rule (a seed trained in a batch has a single run's settings)."""
        drop = ("file", "arrays", "outputs", "seeds")
        return {**{k: v for k, v in self.spec.items() if k not in drop},
                "seed": seed, "line": line, "acting": self.outputs[line]}  # fmt: skip

    @property
    def code(self) -> tuple[str, ...]:
        return CODE[self.side]

    def key(self, line: str, seed: int) -> str:
        return results.result_key(self.result_name(line, seed), self.settings(line, seed),
                                  _fingerprint(self.code))  # fmt: skip


@functools.cache
def _fingerprint(code: tuple[str, ...]) -> str:
    return results.code_fingerprint(code)


def row_info(row: RowSpec, path: Path) -> dict[str, Any]:
    """What a job needs of a row's file: its action size, and the data as the results
    record it (name, size, the reference returns stored in it)."""
    from tianshou_offline import read_metadata
    from tianshou_offline.converters.d4rl_scores import reference_scores

    md = read_metadata(path)  # the action space stored in the file (no environment is made)
    space: Any = md.action_space
    lo, hi = reference_scores(path)
    return {
        "action_size": int(space.shape[0]) if row.suite == "continuous" else int(space.n),
        "data": {"name": path.name, "transitions": md.num_transitions,
                 "episodes": md.num_episodes, "ref_min": lo, "ref_max": hi},
    }  # fmt: skip


def make_jobs(
    rows: Sequence[RowSpec], files: dict[str, Path], arrays: dict[str, Path], *, scale: Scale,
    seeds: int, algorithms: Sequence[str] | None, sides: Sequence[str], device: str,
) -> list[Job]:  # fmt: skip
    """Every run of ``rows`` × lines (``algorithms``: only these line keys) × ``sides`` ×
    the first ``seeds`` seeds, row-major in the given order (a row's runs, every seed, before
    the next row's: a table cut short has complete rows)."""
    jobs: list[Job] = []
    for row in rows:
        info = row_info(row, files[row.key])
        lines = {k: ln for k, ln in LINES[row.suite].items() if not algorithms or k in algorithms}
        runs: list[tuple[str, str, dict[str, str]]] = []  # side, algo, outputs
        for side in sides:
            if side == "ours":
                for name in dict.fromkeys(ln.ours for ln in lines.values()):
                    outs = {k: ln.acting for k, ln in lines.items() if ln.ours == name}
                    runs.append((side, name, outs))
            else:
                for key in D3RLPY_JOBS[row.suite]:
                    outs = {ln.peer: ln.acting for ln in lines.values()
                            if ln.peer is not None and ln.peer.split("-")[0] == key}  # fmt: skip
                    if outs:
                        runs.append((side, key, outs))
        common = {
            "scale": scale.name, "preset": scale.preset, "row": row.key, "env": row.env,
            "suite": row.suite, "file": str(files[row.key]),
            "file_sha256": _sha256(files[row.key]),
            "arrays": str(arrays.get(row.key, arrays_path(files[row.key]))), **info,
            "eval_episodes": scale.eval_episodes, "device": device,
        }  # fmt: skip
        for side, algo, outs in runs:
            batches = [[s] for s in range(seeds)]
            if side == "ours":
                overrides = row_overrides(algo, files[row.key])
                config = our_config(scale, row.suite, algo, **overrides)
                hp = {"hp": config.hyperparameters()}
                if overrides:
                    hp["overrides"] = overrides
                name = algo
                if seeds > 1 and seed_batchable(config, files[row.key]):
                    batches = [list(range(seeds))]
            else:
                name = D3RLPY_JOBS[row.suite][algo]
                overrides = row_overrides(name, files[row.key])
                ours = our_config(scale, row.suite, name, **overrides).hyperparameters()
                hp = {"d3rlpy": d3rlpy_spec(scale, row.suite, algo, overrides),
                      "nets": {k: ours[k] for k in ("hidden_sizes", "trunk_sizes") if k in ours}}  # fmt: skip
            for batch in batches:
                spec = {**common, "algo": algo, "side": side, "seed": batch[0], "seeds": batch,
                        "gradient_steps": scale.steps(row.suite, algo),
                        "batch_size": batch_size(scale, row.suite, name), **hp,
                        "outputs": outs}  # fmt: skip
                jobs.append(Job(row.key, algo, side, tuple(batch), spec))
    return jobs


def seed_batchable(config: AlgorithmConfig, path: Path) -> bool:
    """Whether our algorithm of ``config`` has a seed-batched form (for the spaces stored in
    the file at ``path``)."""
    from tianshou_offline import read_metadata
    from tianshou_offline.algorithms.seeds import SEED_BATCHES

    md = read_metadata(path)
    if md.observation_space is None or md.action_space is None:
        return False
    return type(config.build(md.observation_space, md.action_space)) in SEED_BATCHES


def _kept(job: Job, results_dir: Path) -> list[dict[str, Any]] | None:
    """The kept results of every seed and output of ``job`` at this code (None: one is
    missing)."""
    out = []
    for seed in job.seeds:
        for line in job.outputs:
            record = results.find_result(BENCHMARK, job.result_name(line, seed),
                                         job.settings(line, seed), job.code, results_dir)  # fmt: skip
            if record is None:
                return None
            out.append(_as_run(record))
    return out


def _as_run(record: dict[str, Any]) -> dict[str, Any]:
    s = record["settings"]
    return {**record["figures"], "row": s["row"], "line": s["line"], "side": s["side"],
            "seed": s["seed"]}  # fmt: skip


def run_job(job: Job, results_dir: Path, d3rlpy: str | None) -> list[dict[str, Any]]:
    """Run one job in its own process(es), unless its results at this code are kept; each
    seed's and output's result is kept in ``results_dir``
    (:func:`benchmarks._lib.results.write_result`).

    :returns: the runs (one per seed and line) as the table reads them.
    """
    kept = _kept(job, results_dir)
    if kept is not None:
        return kept
    module = ["-m", "benchmarks.quality_table", "--worker"]
    with results.LoadMonitor() as load, tempfile.TemporaryDirectory(prefix="quality_") as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps({**job.spec, "workdir": tmp}))
        log = Path(tmp) / "log.txt"
        steps: list[list[str]]
        if job.side == "ours":
            steps = [[sys.executable, *module, "ours", str(job_path)]]
        else:
            if d3rlpy is None:
                raise RuntimeError("no d3rlpy interpreter")
            steps = [
                [d3rlpy, *module, "d3rlpy", str(job_path)],
                [sys.executable, *module, "evaluate", str(job_path)],
            ]
        for argv in steps:
            with open(log, "a") as f:
                proc = subprocess.run(
                    argv, stdout=f, stderr=subprocess.STDOUT, env=child_env(1), cwd=tmp
                )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"{job.name}: {' '.join(argv[-3:])} failed:\n{log.read_text()[-3000:]}"
                )
        figures: dict[str, dict[str, dict[str, Any]]] = json.loads(
            (Path(tmp) / "result.json").read_text()
        )
    out = []
    for seed in job.seeds:
        for line in job.outputs:
            path = results.write_result(
                BENCHMARK, job.result_name(line, seed), settings=job.settings(line, seed),
                figures=figures[str(seed)][line], code=job.code, seeds=[seed],
                data={job.row: job.spec["file_sha256"]}, load=load,
                d3rlpy=D3RLPY_VERSION if job.side == "d3rlpy" else None, results_dir=results_dir,
            )  # fmt: skip
            out.append(_as_run(json.loads(path.read_text())))
    return out


def _ray_job(
    job: Job, results_dir: str, d3rlpy: str | None, torch_version: str
) -> list[dict[str, Any]]:
    """One job as a Ray task: on the node that runs it, d3rlpy's interpreter is the one given
    (``--d3rlpy-python``, at the same path on every node) or the default venv, made there if
    missing."""
    if job.side == "d3rlpy":
        d3rlpy = d3rlpy_python(d3rlpy, create=True, torch_version=torch_version)
    return run_job(job, Path(results_dir), d3rlpy)


def run_jobs(
    jobs: Sequence[Job], results_dir: Path, d3rlpy: str | None, *, parallel: int,
    ray_address: str | None = None, use_ray: bool = False, device: str = "cpu",
    max_retries: int = 2, torch_version: str = "",
) -> Iterator[tuple[Job, list[dict[str, Any]] | BaseException]]:  # fmt: skip
    """Run ``jobs`` (kept results of this code are read, not rerun) and yield each with its
    result or its error as it finishes.

    Locally, ``parallel`` processes at a time. With ``use_ray``, every job is a Ray task on
    the cluster at ``ray_address`` (None: a Ray instance this process runs, else a new local
    one), connected as the experiment grids are (:func:`tianshou_offline.scale._ray.ray_session`):
    one CPU each (and one GPU with ``device`` ``cuda``), rerun up to ``max_retries`` times if
    its worker dies; ``results_dir`` and the data files must be at the same path on every
    node (shared storage), as for ``tianshou-offline grid``.
    """
    if not use_ray:
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = {pool.submit(run_job, job, results_dir, d3rlpy): job for job in jobs}
            for fut in concurrent.futures.as_completed(futures):
                exc = fut.exception()
                yield futures[fut], exc if exc is not None else fut.result()
        return
    from tianshou_offline.scale._ray import as_completed, ray_session, task_error

    todo = []
    for job in jobs:
        kept = _kept(job, results_dir)
        if kept is not None:
            yield job, kept
        else:
            todo.append(job)
    if not todo:
        return
    with ray_session(ray_address) as ray:
        task: Any = ray.remote(_ray_job)
        refs = {
            task.options(num_cpus=1, num_gpus=1 if device.startswith("cuda") else 0,
                         max_retries=max_retries, name=f"quality {job.name}")
            .remote(job, str(results_dir), d3rlpy, torch_version): job
            for job in todo
        }  # fmt: skip
        with closing(as_completed(refs)) as finished:
            for job, value, error in finished:
                yield job, value if error is None else task_error(error)

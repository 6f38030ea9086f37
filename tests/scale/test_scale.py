"""Scale-out on Ray (tianshou_offline.scale): shard conversion and experiment grids on one
local Ray instance of 2 CPUs, started once for this module.

Conversion: RL Unplugged-style shards written with real TensorFlow from real Atari frames
(``_rlu_helpers``), converted through Ray and locally; a worker killed mid-shard
(``os.kill`` of the pid its task reports, ``_scale_hooks``) is retried. Grids: a CartPole
dataset recorded with ``EpisodeRecorder``, real training with ``OfflineTrainer``, real
evaluation in gymnasium.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

ray = pytest.importorskip("ray")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("ale_py")

from tests.helpers import scale_hooks as _scale_hooks  # noqa: E402
from tests.helpers.rlu import atari_episodes, episode_records, write_shard  # noqa: E402
from tianshou_offline.cli import main  # noqa: E402
from tianshou_offline.converters import rl_unplugged as rlu  # noqa: E402
from tianshou_offline.errors import ClusterError  # noqa: E402
from tianshou_offline.quickstart import record_cartpole_expert  # noqa: E402
from tianshou_offline.scale import convert as sc  # noqa: E402
from tianshou_offline.scale import grid as sg  # noqa: E402

GAME = "Breakout"


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.cloudpickle.register_pickle_by_value(_scale_hooks)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 shards of 3 random-play episodes (cut across shard boundaries)."""
    png: dict[int, bytes] = {}
    records: list[bytes] = []
    for i, ep in enumerate(atari_episodes(3, max_steps=120, seed=5)):
        records += episode_records(ep, 100 + i, png_cache=png)
    d = tmp_path_factory.mktemp("rlu_cache")
    bounds = np.linspace(0, len(records), 5).astype(int)
    for k in range(4):
        write_shard(d / GAME / rlu.shard_filename(1, k), records[bounds[k] : bounds[k + 1]])
    return d


@pytest.fixture(scope="module")
def local_outputs(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rlu_local")
    rlu.convert_rl_unplugged_atari(GAME, out, shard_ids=range(4), cache_dir=cache, workers=1)
    return out / GAME


def h5_content(path: Path) -> dict[str, Any]:
    """Every dataset's bytes (dtype, shape) and every attribute of a file, by HDF5 path."""
    found: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        for k, v in obj.attrs.items():
            found[f"{name}@{k}"] = v.tobytes() if isinstance(v, np.ndarray) else v
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            found[name] = (data.dtype.str, data.shape, np.asarray(data).tobytes())

    with h5py.File(path, "r") as f:
        for k, v in f.attrs.items():
            found[f"/@{k}"] = v.tobytes() if isinstance(v, np.ndarray) else v
        f.visititems(visit)
    return found


def assert_same_content(a: Path, b: Path) -> None:
    ca, cb = h5_content(a), h5_content(b)
    assert sorted(ca) == sorted(cb)
    differ = [k for k in ca if not _equal(ca[k], cb[k])]
    # when the file was written: the one attribute allowed to differ
    assert all(k.endswith("@provenance.created") for k in differ), differ


def _equal(x: Any, y: Any) -> bool:
    return bool(np.array_equal(x, y)) if isinstance(x, np.ndarray) else bool(x == y)


def no_temps(d: Path) -> bool:
    return not [p for p in d.iterdir() if p.name.startswith(".")]


def kill_when_paused(control: Path, timeout: float = 120.0) -> threading.Thread:
    """A thread that SIGKILLs the pid a hook writes to ``control/pid``."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid_file = control / "pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                (control / "killed").write_text(pid_file.read_text())
                return
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# --------------------------------------------------------------------------- conversion


def test_ray_conversion_equals_the_local_one(
    cache: Path, local_outputs: Path, tmp_path: Path
) -> None:
    seen: list[rlu.ShardResult] = []
    res = sc.convert_rl_unplugged_atari_ray(
        GAME, tmp_path, shard_ids=range(4), cache_dir=cache, on_result=seen.append
    )
    assert not res.failures and len(res.parts) == 4 and len(seen) == 4
    assert [p.name for p in res.outputs] == [f"{rlu.shard_filename(1, k)}.hdf5" for k in range(4)]
    for out in res.outputs:
        assert rlu.is_converted(out)
        assert_same_content(out, local_outputs / out.name)
    assert no_temps(tmp_path / GAME)
    # resume: nothing is submitted again
    again = sc.convert_rl_unplugged_atari_ray(
        GAME, tmp_path, shard_ids=range(4), cache_dir=cache, resume=True
    )
    assert [p.skipped for p in again.parts] == [True] * 4


def test_a_worker_killed_mid_shard_is_retried(
    cache: Path, local_outputs: Path, tmp_path: Path
) -> None:
    control = tmp_path / "control"
    control.mkdir()
    victim = rlu.shard_filename(1, 2)
    killer = kill_when_paused(control)
    res = sc.convert_rl_unplugged_atari_ray(
        GAME, tmp_path / "out", shard_ids=range(4), cache_dir=cache, max_retries=2,
        before_shard=_scale_hooks.PauseShard(victim, str(control)),
    )  # fmt: skip
    killer.join(timeout=5)
    killed = int((control / "killed").read_text())
    attempts = [int(x) for x in (control / "attempts").read_text().split()]
    assert len(attempts) == 2 and attempts[0] == killed != attempts[1]
    assert not res.failures and len(res.parts) == 4
    out = tmp_path / "out" / GAME / f"{victim}.hdf5"
    assert rlu.is_converted(out, cache / GAME / victim)
    assert_same_content(out, local_outputs / out.name)
    assert no_temps(out.parent)  # the killed attempt's half-written temporary is gone


def test_failed_shards_are_summarised_and_the_rest_converted(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src" / GAME
    src.mkdir(parents=True)
    for k in range(2):
        name = rlu.shard_filename(1, k)
        (src / name).write_bytes((cache / GAME / name).read_bytes())
    bad = src / rlu.shard_filename(1, 1)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # truncated
    files = [str(src / rlu.shard_filename(1, k)) for k in range(2)]
    code = main(["convert", "rl-unplugged-atari", "--ray", "--shard-id", *files,
                 "--output-dir", str(tmp_path / "out"), "--no-progress"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2
    assert f"{rlu.shard_filename(1, 0)}.hdf5: " in out  # the good shard's line
    assert "failed: " in out and str(bad) in out and "DatasetFormatError" in out
    assert err.strip().splitlines()[-1].startswith("error: 1 of 2 shards failed")
    assert rlu.is_converted(tmp_path / "out" / GAME / f"{rlu.shard_filename(1, 0)}.hdf5")
    assert not (tmp_path / "out" / GAME / f"{rlu.shard_filename(1, 1)}.hdf5").exists()


def test_an_output_directory_a_worker_cannot_write_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output directory should be")
    with pytest.raises(ClusterError, match=r"not-a-dir.*cannot write the output directory"):
        sc.check_output_dir(blocker / GAME)


# --------------------------------------------------------------------------- grids


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("grid_data") / "cartpole-scripted.hdf5"
    return record_cartpole_expert(path, episodes=8, eps=0.25, seed=0)


BUDGET = sg.Budget(epochs=2, steps_per_epoch=40, batch_size=64, test_episodes=1, eval_episodes=2)


@pytest.mark.slow  # Ray workers import torch and Tianshou: ~1-2 min on 2 shared cores
def test_grid_table_and_rerun_skips_finished_cells(
    cartpole: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(
        f"output: {tmp_path / 'runs'}\ndatasets: [{cartpole}]\n"
        "algorithms: {il: {}, bcq: {threshold: 0.3}}\nseeds: 2\n"
        f"budget: {json.dumps(dataclass_dict(BUDGET))}\n"
    )
    grid = sg.load_grid(spec)
    assert len(grid.cells) == 4
    first = sg.run_grid(grid)
    assert not first.failures and len(first.results) == 4
    assert not any(r["skipped"] for r in first.results)
    rows = json.loads(first.files["json"].read_text())["rows"]
    assert [r["algorithm"] for r in rows] == ["il", "bcq"]
    for row in rows:
        returns = [
            r["final_return_mean"]
            for r in first.results
            if r["spec"]["algorithm"] == row["algorithm"]
        ]
        assert row["seeds"] == [0, 1]
        assert row["return_mean"] == pytest.approx(np.mean(returns))
        assert row["return_se"] == pytest.approx(np.std(returns, ddof=1) / np.sqrt(2))
    for r in first.results:
        d = Path(r["dir"])
        assert list(d.glob("events.out.tfevents.*")) and (d / "last.pt").is_file()
        assert (d / "policy.pt").is_file() and len(r["curve"]) == BUDGET.epochs + 1
        assert r["gradient_steps"] == 80 and r["resumed_from_epoch"] == 0
    assert first.files["plot"].stat().st_size > 1000
    assert "| il on cartpole-scripted | 2 |" in first.files["markdown"].read_text()
    stamps = {r["key"]: (Path(r["dir"]) / "result.json").stat().st_mtime_ns for r in first.results}
    # the CLI reruns the grid: every cell is finished, none is trained again
    assert main(["grid", str(spec), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert (
        out.count("skipped (finished)") == 4
        and "| bcq[threshold=0.3] on cartpole-scripted | 2 |" in out
    )
    for r in first.results:
        assert (Path(r["dir"]) / "result.json").stat().st_mtime_ns == stamps[r["key"]]


def dataclass_dict(b: sg.Budget) -> dict[str, int]:
    from dataclasses import asdict

    return asdict(b)


@pytest.mark.slow  # Ray workers import torch and Tianshou: ~1-2 min on 2 shared cores
def test_a_cell_killed_mid_run_resumes_from_its_checkpoint(cartpole: Path, tmp_path: Path) -> None:
    budget = sg.Budget(
        epochs=3, steps_per_epoch=30, batch_size=64, test_episodes=1, eval_episodes=2
    )
    cell = sg.Cell("il", str(cartpole), seed=3, budget=budget)
    control = tmp_path / "control"
    control.mkdir()
    killer = kill_when_paused(control)
    res = sg.run_grid([cell], tmp_path / "ray", max_retries=2,
                      on_checkpoint=_scale_hooks.PauseCell(cell.key, 1, str(control)))  # fmt: skip
    killer.join(timeout=5)
    assert not res.failures
    (result,) = res.results
    assert result["resumed_from_epoch"] == 1 and result["pid"] != int(
        (control / "killed").read_text()
    )
    # the same cell uninterrupted, in this process: the same final policy and evaluation
    straight = sg.run_cell(cell, tmp_path / "straight")
    assert straight["resumed_from_epoch"] == 0
    assert result["returns"] == straight["returns"]
    import torch

    from tianshou_offline.recording.policies import read_policy_state_dict

    a = read_policy_state_dict(Path(result["dir"]) / "policy.pt")
    b = read_policy_state_dict(Path(straight["dir"]) / "policy.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the training steps the resumed run logged continue the checkpoint's
    assert [p[0] for p in result["curve"]] == [0.0, 30.0, 60.0, 90.0]


# --------------------------------------------------------------- the quality table on Ray


def test_quality_table_jobs_on_ray_equal_local_runs(tmp_path: Path) -> None:
    """``quality_table.py --ray``: each job a Ray task; the results equal the same jobs run
    locally (each job is a seeded process of its own), kept results are not rerun, and a job
    that fails is reported with its error while the others finish."""
    import dataclasses

    from benchmarks._lib.quality_data import record_mountain_car
    from benchmarks._lib.quality_jobs import make_jobs, run_jobs
    from benchmarks._lib.quality_specs import ROWS, SCALES

    path = record_mountain_car(tmp_path / "mc.hdf5", episodes=4, eps=0.3, reference_episodes=3)
    row = ROWS["mountaincar"]
    scale = dataclasses.replace(
        SCALES["small"], gradient_steps={"continuous": 30, "discrete": 30}, eval_episodes=2
    )
    jobs = make_jobs([row], {row.key: path}, {}, scale=scale, seeds=1,
                        algorithms=["il", "cql"], sides=["ours"], device="cpu")  # fmt: skip
    gone = {"file": str(tmp_path / "gone.hdf5"), "file_sha256": "0" * 64, "seed": 9, "seeds": [9]}
    bad = dataclasses.replace(jobs[0], seeds=(9,), spec={**jobs[0].spec, **gone})
    on_ray, local = tmp_path / "ray", tmp_path / "local"
    on_ray.mkdir()
    local.mkdir()

    def run(jobs: list[Any], out: Path, **kw: Any) -> dict[str, Any]:
        return {j.name: r for j, r in run_jobs(jobs, out, None, parallel=2, **kw)}

    got = run([*jobs, bad], on_ray, use_ray=True)
    assert isinstance(got[bad.name], RuntimeError) and "gone.hdf5" in str(got[bad.name])
    ref = run(jobs, local)
    for job in jobs:
        ((line, seed),) = [(line, seed) for line in job.outputs for seed in job.seeds]
        (r,), (loc,) = got[job.name], ref[job.name]
        assert (r["line"], r["seed"]) == (line, seed)
        assert r["returns"] == loc["returns"] and r["score"] == loc["score"]
        assert (on_ray / "quality_table" / f"{job.key(line, seed)}.json").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in on_ray.rglob("*.json")}
    again = run(jobs, on_ray, use_ray=True)
    assert {k: a for k, a in again.items()} == {j.name: got[j.name] for j in jobs}
    assert {p: p.stat().st_mtime_ns for p in on_ray.rglob("*.json")} == stamps

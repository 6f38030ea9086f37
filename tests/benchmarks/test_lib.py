"""The benchmarks' shared library: statistics (one mean ± s.e., the t quantiles, the t-test,
Holm's correction), result files (keys that change with the code) and README sections."""

from __future__ import annotations

import json
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks._lib import readme, results
from benchmarks._lib.experts import cached_file
from benchmarks._lib.stats import (
    beyond_noise,
    diff_cell,
    format_mean_se,
    holm,
    mean_se,
    mean_std,
    t_quantile,
    t_test,
)

# ------------------------------------------------------------------ statistics


def test_one_seed_has_no_spread() -> None:
    assert mean_se([5.0]) == (5.0, None)
    assert format_mean_se(*mean_se([52.8])) == "52.8 (1 seed)"
    assert mean_std([52.8]) == "52.8 (1 seed)"
    with pytest.raises(ValueError):
        mean_se([])
    m, se = mean_se([1.0, 2.0, 3.0])
    assert m == 2.0 and se == pytest.approx(1.0 / math.sqrt(3))


@pytest.mark.parametrize(
    ("dof", "table"),
    [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (10, 2.228), (30, 2.042)],
)
def test_t_quantiles_match_the_printed_table(dof: int, table: float) -> None:
    """Two-sided 95% critical values of Student's t as printed in statistics tables."""
    assert t_quantile(dof) == pytest.approx(table, abs=1e-3)


def test_t_quantile_limits() -> None:
    assert t_quantile(10_000) == pytest.approx(1.960, abs=1e-3)
    assert t_quantile(2, 0.99) == pytest.approx(9.925, abs=1e-3)
    assert t_quantile(0) == math.inf


def test_beyond_noise_is_a_t_test_not_two_standard_errors() -> None:
    # mean 2, s.e. 0.577: t = 3.46 > 2 standard errors, but < 4.303 (3 seeds, 95%)
    assert not beyond_noise([1.0, 2.0, 3.0])
    assert beyond_noise([1.0, 1.1, 0.9])  # t = 17.3
    assert beyond_noise([-1.0, -1.1, -0.9])
    assert not beyond_noise([3.0])  # one seed: no test
    assert not beyond_noise([0.0, 0.0, 0.0])
    assert beyond_noise([0.5, 0.5])  # no spread at all, nonzero
    p = t_test([1.0, 2.0, 3.0])
    assert p is not None and 0.05 < p < 0.1  # 2·P(T₂ > 3.464) = 0.0742
    assert p == pytest.approx(0.0742, abs=1e-3)


def test_holm_step_down() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005 ≤ 0.05/4, 0.01 ≤ 0.05/3, 0.03 > 0.05/2: stop
    assert holm(p) == [True, False, False, True]
    assert holm([0.04]) == [True]  # one test: uncorrected
    assert holm([0.04, None]) == [True, False]  # a cell without a test does not count
    assert holm([0.04, 0.04]) == [False, False]
    assert holm([0.02, 0.04]) == [True, True]  # 0.02 ≤ 0.025, then 0.04 ≤ 0.05
    assert holm([]) == []


def test_diff_cell() -> None:
    assert diff_cell([3.0, 4.0], [1.0, 1.0], paired=True) == "+2.5 ± 0.5"
    assert diff_cell([1.0], [2.0], paired=True) == "—"
    welch = diff_cell([1.0, 3.0], [0.0, 2.0], paired=False)
    assert welch == "+1.0 ± 1.4"


# ------------------------------------------------------------------ result files


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "benchmarks" / "_lib").mkdir(parents=True)
    (tmp_path / "benchmarks" / "_lib" / "a.py").write_text("A = 1\n")
    (tmp_path / "code.py").write_text("X = 1\n")
    monkeypatch.setattr(results, "REPO", tmp_path)
    return tmp_path


def test_result_file_and_key_follow_settings_and_code(repo: Path) -> None:
    out = repo / "results"
    with results.LoadMonitor(every=0.01) as load:
        pass
    path = results.write_result(
        "bench", "row-a", settings={"steps": 10}, figures={"ms": 1.5}, code=["code.py"],
        seeds=[0, 1], data={"file": "ab" * 32}, load=load, results_dir=out,
    )  # fmt: skip
    record = json.loads(path.read_text())
    assert record["figures"] == {"ms": 1.5} and record["seeds"] == [0, 1]
    assert record["versions"]["code_fingerprint"] == results.code_fingerprint(["code.py"])
    assert record["versions"]["torch"] and record["machine"]["cpus"]
    assert set(record["machine"]["load"]) >= {"before", "after", "median", "max"}
    assert results.find_result("bench", "row-a", {"steps": 10}, ["code.py"], out) == record
    assert results.find_result("bench", "row-a", {"steps": 11}, ["code.py"], out) is None
    (repo / "code.py").write_text("X = 2\n")  # the code changed: the old result is not reused
    assert results.find_result("bench", "row-a", {"steps": 10}, ["code.py"], out) is None
    (repo / "code.py").write_text("X = 1\n")
    (repo / "benchmarks" / "_lib" / "a.py").write_text("A = 2\n")  # so did the library
    assert results.find_result("bench", "row-a", {"steps": 10}, ["code.py"], out) is None
    # tables read the newest result per name, whatever code it came from
    results.write_result("bench", "row-a", settings={"steps": 10}, figures={"ms": 1.2},
                         code=["code.py"], results_dir=out)  # fmt: skip
    kept = results.read_results("bench", out)
    assert [r["figures"]["ms"] for r in kept] == [1.2]
    assert len(results.read_results("bench", out, latest=False)) == 2
    with pytest.raises(FileNotFoundError):
        results.code_fingerprint(["missing.py"])


# ------------------------------------------------------------------ expert data


def test_gathering_expert_data_leaves_the_global_generators_as_they_were(tmp_path: Path) -> None:
    """A caller that seeds and then asks for the session's expert data draws the same numbers
    whether this call gathered the data or found it. The DT learning test seeds first: run
    alone, it gathered the Pendulum data (SAC training from its own seed) and then trained
    from wherever SAC left the generators (return −499.8 < −400), not from its seed as in
    the full suite, where an earlier test had gathered. Fails without
    ``global_generators_kept`` in ``cached_file``."""

    def gather(path: Path) -> Path:  # as a gatherer does: seed, then draw
        torch.manual_seed(7), np.random.seed(7), random.seed(7)
        torch.rand(4), np.random.rand(4), random.random()
        path.write_bytes(b"data")
        return path

    def seeded_draws() -> tuple[list[float], list[float], float]:
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()

    def after_asking() -> tuple[list[float], list[float], float]:
        torch.manual_seed(0), np.random.seed(0), random.seed(0)
        assert cached_file(tmp_path, "expert.hdf5", gather) == tmp_path / "expert.hdf5"
        return seeded_draws()

    gathered = after_asking()
    assert after_asking() == gathered  # the second call found the file
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    assert seeded_draws() == gathered


def test_concurrent_callers_gather_expert_data_once(tmp_path: Path) -> None:
    """The workers of ``pytest -n`` share one expert-data folder: two callers asking at once
    get the one file, gathered once (the second waits on the lock while the first gathers).
    Without the lock in ``cached_file`` both gather (2 calls)."""
    calls: list[int] = []

    def gather(path: Path) -> Path:
        calls.append(1)
        time.sleep(0.5)  # both callers ask while the first gathers
        path.write_bytes(b"data")
        return path

    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: cached_file(tmp_path, "e.hdf5", gather), range(2)))
    assert paths == [tmp_path / "e.hdf5"] * 2 and len(calls) == 1


# ------------------------------------------------------------------ README sections


def test_readme_sections(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text("a\n<!-- BEGIN t -->\nold\n<!-- END t -->\nb\n")
    assert readme.section(path.read_text(), "t") == "old\n"
    assert readme.write_sections({"t": "| x |"}, path) == ["t"]
    assert path.read_text() == "a\n<!-- BEGIN t -->\n| x |\n<!-- END t -->\nb\n"
    assert readme.write_sections({"t": "| x |\n"}, path) == []
    with pytest.raises(readme.MarkerError):
        readme.section(path.read_text(), "missing")
    with pytest.raises(readme.MarkerError):
        readme.section(path.read_text() * 2, "t")


def test_check_exits_nonzero_only_on_a_missed_target_when_asked() -> None:
    from benchmarks._lib.report import finish

    assert finish([], check=True) == 0
    assert finish(["ratio 1.2× < 1.5×"], check=False) == 0
    assert finish(["ratio 1.2× < 1.5×"], check=True) == 1


def test_speed_targets_read_the_kept_rows() -> None:
    """``train_speed --check`` judges each row by the median per-round ratio against the
    faster fused-Adam peer (Tianshou default is context, never the judge)."""
    from benchmarks import train_speed

    def side(key: str, ms: list[float]) -> dict[str, object]:
        return {"key": key, "ms": ms, "floor": None}

    fused = side("tianshou-fused", [1.4, 1.6, 1.4])
    row: dict[str, Any] = {"label": "X", "ours": [["ours", ""]], "sides": [
        side("ours", [1.0, 1.0, 1.0]), fused, side("tianshou-default", [9.0, 9.0, 9.0]),
        side("d3rlpy", [2.0, 2.0, 2.0])]}  # fmt: skip
    record = {"settings": {"threads": 1}, "figures": {"rows": [row]}}
    got = train_speed.faster_peer_ratio(row, "ours")
    assert got is not None and got[0] == "tianshou-fused" and got[1] == pytest.approx(1.4)
    missed = train_speed.missed_targets([record])
    assert len(missed) == 1 and "1.40× tianshou-fused" in missed[0]
    fused["ms"] = [1.6, 1.6, 1.6]
    assert train_speed.missed_targets([record]) == []


def test_converter_and_memory_targets_read_the_kept_figures() -> None:
    """``--check`` of ``convert_speed``, ``rlu_speed`` and ``atari_memory`` judges the figures
    of the kept results (the same function judges a fresh run): each target flags exactly the
    figure on the wrong side of it."""
    from benchmarks import atari_memory, convert_speed, rlu_speed

    def cs(read: float, naive: float, memory: float) -> dict[str, Any]:
        rows = [["D4RL 1,000 rows (gzip)", "raw h5py read (I/O bound)", [1.0, 1.0], "convert d4rl",
                 [read, read]], ["D4RL 1,000 rows (gzip)", "raw h5py read + write", [1.0, 1.0],
                 "convert d4rl", [9.0, 9.0]], ["Minari 10x10 (hdf5)",
                 "naive: iterate+concat+from_data", [naive, naive], "convert minari", [1.0, 1.0]],
                 ["Minari 10x10 (hdf5)", "naive: iterate+concat+from_data", [1.0, 1.0],
                 "convert minari --reader minari", [9.0, 9.0]]]  # fmt: skip
        return {"figures": {"rows": rows, "bounds": [],
                            "memory": [["convert d4rl (gzip)", {"ratio": memory}]]}}  # fmt: skip

    assert convert_speed.missed_targets([cs(2.0, 5.0, 1.5)]) == []
    missed = convert_speed.missed_targets([cs(2.1, 4.9, 1.6)])
    assert len(missed) == 3 and "2.10x the raw read" in missed[0] and "4.90x faster" in missed[1]

    def rl(tf: float, bound: float, rss: float) -> dict[str, Any]:
        return {"figures": {"converter_per_s": 100.0, "tf_loop_per_s": 100.0 / tf,
                            "decode_bound_per_s": 100.0 / bound, "peak_rss_main_mib": rss,
                            "output_mib": 1.0}}  # fmt: skip

    assert rlu_speed.missed_targets([rl(100.0, 0.5, 2.0)]) == []
    assert len(rlu_speed.missed_targets([rl(99.0, 0.49, 2.1)])) == 3

    def am(steps: int, peak_gb: float) -> dict[str, Any]:
        return {"settings": {"steps": steps}, "figures": {"runs": [{"peak_rss": peak_gb * 1e9}]}}

    assert atari_memory.missed_targets([am(1_000_000, 8.0), am(100_000, 9.0)]) == []
    assert len(atari_memory.missed_targets([am(1_000_000, 8.1)])) == 1


# ------------------------------------------------------------------ the quality table's sides


def test_every_quality_line_maps_to_d3rlpy_from_the_preset() -> None:
    """Both sides' settings come from the preset: every line's entry exists, every d3rlpy
    run maps from the preset's config through the field map, and the lines without a
    d3rlpy peer are exactly the algorithms d3rlpy lacks."""
    from benchmarks._lib import quality_specs
    from benchmarks._lib.field_map import d3rlpy_has

    scale = quality_specs.SCALES["small"]
    for suite, lines in quality_specs.LINES.items():
        for line in lines.values():
            assert (line.peer is None) == (
                not d3rlpy_has(quality_specs.our_config(scale, suite, line.ours))
            )
        for key in quality_specs.D3RLPY_JOBS[suite]:
            assert quality_specs.d3rlpy_spec(scale, suite, key)["params"]
    cql = quality_specs.d3rlpy_spec(scale, "continuous", "cql")["params"]
    hp = quality_specs.our_config(scale, "continuous", "cql").hyperparameters()
    assert cql["alpha_lr"] == 0.0 and cql["conservative_weight"] == hp["cql_weight"]
    assert cql["temp_lr"] == hp["alpha_lr"] and not cql["soft_q_backup"]
    crr = quality_specs.d3rlpy_spec(scale, "continuous", "crr")["params"]
    assert (crr["target_update_type"], crr["target_update_interval"]) == ("soft", 1)
    # d3rlpy's DiscreteCQL loss is twice ours in its form: alpha = 2 w
    dqn = quality_specs.our_config(scale, "discrete", "cql-dqn").hyperparameters()
    disc = quality_specs.d3rlpy_spec(scale, "discrete", "cql")
    assert disc["params"]["alpha"] == 2 * dqn["min_q_weight"] and disc["n_step"] == 3
    iql = quality_specs.d3rlpy_spec(scale, "continuous", "iql")
    assert iql["observation_scaler"] and iql["params"]["weight_temp"] == 3.0
    assert quality_specs.d3rlpy_spec(scale, "continuous", "awac")["observation_scaler"]


def test_field_map_refuses_what_d3rlpy_cannot_express() -> None:
    from benchmarks._lib import quality_specs
    from benchmarks._lib.field_map import NotExpressible, check_expressible

    scale = quality_specs.SCALES["small"]
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("awac", "continuous", {}, "normalize_weights"),  # the preset's clipped weights
        ("cql", "continuous", {"target_entropy": -1.0}, "target_entropy"),
        ("iql", "continuous", {"value_lr": 1e-3}, "value_lr"),
        ("crr", "continuous", {"target_update_freq": 10}, "tau"),
        ("cql", "discrete", {}, "num_quantiles"),  # QR-DQN: no d3rlpy form
        ("td3bc", "continuous", {"n_step_return_horizon": 3}, "n_step_return_horizon"),
        ("dt", "discrete", {"init_std": None}, "init_std"),  # d3rlpy's: GPT-2's N(0, 0.02)
    ]
    for name, suite, changes, field in cases:
        with pytest.raises(NotExpressible, match=field):
            check_expressible(quality_specs.our_config(scale, suite, name).replace(**changes))
    with pytest.raises(NotExpressible, match="no discrete-action 'crr'"):
        check_expressible(quality_specs.our_config(scale, "discrete", "crr"))
    for suite, jobs in quality_specs.D3RLPY_JOBS.items():  # what the table runs is expressible
        for name in jobs.values():
            check_expressible(quality_specs.our_config(scale, suite, name))


def test_crr_acting_rules_share_the_trained_networks() -> None:
    """CRR's two lines: the actor's mean (deterministic) and the critic-weighted choice among
    4 actor samples (redrawn every call) of the same actor and critics."""
    import gymnasium as gym
    import numpy as np
    import torch
    from tianshou.data import Batch

    from benchmarks._lib import quality_workers
    from tianshou_offline.algorithms.continuous.policies import CriticWeightedPolicy
    from tianshou_offline.algorithms.registry import make_algorithm

    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    act_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    algorithm: Any = make_algorithm("crr", obs_space, act_space, preset="small")
    obs = Batch(obs=np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32), info=Batch())
    mean = quality_workers._policy_for(algorithm, "actor-mean").eval()
    cwp = quality_workers._policy_for(algorithm, "critic-weighted").eval()
    assert isinstance(cwp, CriticWeightedPolicy) and cwp.num_sampled_actions == 4
    assert cwp.actor is algorithm.policy.actor and cwp.critics is algorithm.critics
    with torch.no_grad():
        a, b = mean(obs).act, mean(obs).act
        c, d = cwp(obs).act, cwp(obs).act
    assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    assert not torch.equal(torch.as_tensor(c), torch.as_tensor(d))
    with pytest.raises(ValueError, match="acting rule"):
        quality_workers._policy_for(
            make_algorithm("td3bc", obs_space, act_space, preset="small"), "critic-weighted"
        )


def test_quality_table_seed_batch_equals_single_runs(tmp_path: Path) -> None:
    """Our side trains a cell's seeds as one seed batch: seed 1 of a batch of seeds 0-1 acts
    as the single run of seed 1 (torch.manual_seed(1), then the preset's algorithm) does."""
    import gymnasium as gym
    import numpy as np
    import torch

    from benchmarks._lib import quality_specs, quality_workers
    from tianshou_offline.recording import EpisodeRecorder

    path = tmp_path / "pendulum.hdf5"
    refs = {"ref_min_score": -1500.0, "ref_max_score": -150.0}
    env = EpisodeRecorder(gym.make("Pendulum-v1"), path, provenance_extra=refs)
    env.reset(seed=0)
    for _ in range(400):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    env.close()
    scale = quality_specs.SCALES["small"]
    spec = {
        "env": "Pendulum-v1", "suite": "continuous", "algo": "td3bc", "file": str(path),
        "preset": scale.preset, "hp": quality_specs.our_config(scale, "continuous", "td3bc").hyperparameters(),
        "batch_size": 32, "gradient_steps": 12, "outputs": {"td3bc": "default"},
    }  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        batched, _ = quality_workers.train_ours({**spec, "seed": 0, "seeds": [0, 1]})
        torch.manual_seed(1)
        single, _ = quality_workers.train_ours({**spec, "seed": 1, "seeds": [1]})
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    a = np.stack([batched[1]["td3bc"](o) for o in obs])
    b = np.stack([single[1]["td3bc"](o) for o in obs])
    c = np.stack([batched[0]["td3bc"](o) for o in obs])
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a, c, atol=1e-3)  # the seeds differ


def test_quality_table_waits_for_a_family_another_side_is_making(tmp_path: Path) -> None:
    """The table's two sides run in two processes over the same families: the second to reach
    a family waits for the first's lock instead of failing with OutputBusyError."""
    import threading

    from benchmarks._lib.quality_data import _when_free
    from tianshou_offline.data.atomic import output_lock

    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with output_lock(tmp_path):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    threading.Timer(0.3, release.set).start()

    def make() -> int:
        with output_lock(tmp_path):
            return 7

    assert _when_free(make, tmp_path, poll_s=0.05) == 7
    t.join()


def _pendulum_file(path: Path, steps: int = 400) -> Path:
    """Random Pendulum-v1 episodes with reference scores (a quality-table row's file)."""
    import gymnasium as gym

    from tianshou_offline.recording import EpisodeRecorder

    refs = {"ref_min_score": -1500.0, "ref_max_score": -150.0}
    env = EpisodeRecorder(gym.make("Pendulum-v1"), path, provenance_extra=refs)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    env.close()
    return path


def test_quality_table_dt_line_conditions_both_sides_on_the_files_best_return(
    tmp_path: Path,
) -> None:
    """The Decision Transformer's line: both sides get the file's best episode return as the
    target (d3rlpy's through the field map, with our rtg_scale), and our trained policy is
    evaluated on the episode so far (the rewards reach its return-to-go)."""
    from benchmarks._lib import quality_specs, quality_workers
    from tianshou_offline.recording.dt_policies import ReturnConditionedActFn
    from tianshou_offline.scale.cell_eval import best_episode_return

    path = _pendulum_file(tmp_path / "pendulum.hdf5")
    best = best_episode_return(path)
    assert quality_specs.row_overrides("dt", path) == {"target_return": best}
    assert quality_specs.row_overrides("td3bc", path) == {}
    scale = quality_specs.SCALES["small"]
    peer = quality_specs.d3rlpy_spec(
        scale, "continuous", "dt", quality_specs.row_overrides("dt", path)
    )
    config = quality_specs.our_config(scale, "continuous", "dt", target_return=best)
    hp = config.hyperparameters()
    assert peer["params"]["target_return"] == best == hp["target_return"]
    assert peer["params"]["rtg_scale"] == hp["rtg_scale"] and peer["observation_scaler"]
    assert (peer["params"]["context_size"], peer["params"]["embed_size"]) == (
        hp["context"], hp["embed_dim"],
    )  # fmt: skip
    spec = {
        "env": "Pendulum-v1", "suite": "continuous", "algo": "dt", "file": str(path),
        "preset": scale.preset, "hp": hp, "overrides": {"target_return": best}, "seed": 0,
        "batch_size": 8, "gradient_steps": 3, "outputs": {"dt": "default"}, "eval_episodes": 1,
    }  # fmt: skip
    policies, _ = quality_workers.train_ours(spec)
    act = policies[0]["dt"]
    assert isinstance(act, ReturnConditionedActFn) and act.policy.target_return == best
    figures = quality_workers.evaluate_policy(spec, act)
    assert len(figures["returns"]) == 1 and np.isfinite(figures["return_mean"])
    assert act._state is not None and int(act._state.t[0, -1]) == 199  # the episode's steps


def test_quality_budgets_per_algorithm_apply_to_both_sides_jobs_and_kept_runs() -> None:
    """A scale's per-algorithm budget (the Decision Transformer's) wins over its suite's for
    both sides' jobs, the caption states it, and a kept run counts only at its budget."""
    import dataclasses

    from benchmarks._lib import quality_report, quality_specs

    scale = quality_specs.SCALES["small"]
    assert scale.steps("discrete", "dt") == scale.gradient_steps["dt"]
    assert scale.steps("discrete", "cql") == scale.gradient_steps["discrete"]
    assert scale.steps("continuous", "dt") == scale.gradient_steps["dt"]
    odd = dataclasses.replace(scale, gradient_steps={"continuous": 7, "discrete": 9,
                                                     "discrete/dt": 3})  # fmt: skip
    assert (odd.steps("discrete", "dt"), odd.steps("continuous", "dt")) == (3, 7)
    caption = quality_report._caption_step_overrides(odd)
    assert caption == ", Decision Transformer (discrete) 3 (batch 64 segments of 20 steps)"
    assert quality_report._caption_step_overrides(quality_specs.SCALES["d4rl"]) == ""


def test_quality_table_names_the_cells_it_lacks() -> None:
    """The report lists every (row, line) without kept results and every cell short of its
    seeds, on either side; a row with nothing kept is named once."""
    from benchmarks._lib import quality_report, quality_specs

    hopper, cartpole = quality_specs.ROWS["hopper-medium"], quality_specs.ROWS["cartpole-medium"]

    def runs(iql_peer_seeds: int) -> list[dict[str, object]]:
        return [{"row": "hopper-medium", "line": key if side == "ours" else ln.peer,
                 "side": side, "seed": k, "score": 1.0}
                for key, ln in quality_specs.LINES["continuous"].items() if key != "dt"
                for side in ("ours", "d3rlpy") if side == "ours" or ln.peer
                for k in range(iql_peer_seeds if key == "iql" and side == "d3rlpy" else 5)]  # fmt: skip

    text = quality_report.coverage(runs(3), [hopper, cartpole], 5)
    assert text.endswith(": Hopper-v5 medium IQL (3 of 5 seeds); Hopper-v5 medium Decision "
                         "Transformer (not run); CartPole-v1 medium (every line)")  # fmt: skip
    assert quality_report.coverage(runs(5), [hopper], 5).endswith(
        ": Hopper-v5 medium Decision Transformer (not run)"
    )


def test_quality_table_names_our_cells_kept_at_other_settings() -> None:
    """A kept run of ours whose settings are not the preset's now (a changed default, or a
    field it does not record: the Decision Transformer's results from before ``init_std``)
    is named with the field, what it recorded and what the preset builds; d3rlpy's runs and
    runs at today's settings are not."""
    from benchmarks._lib import quality_report, quality_specs

    scale = quality_specs.SCALES["small"]
    cartpole, hopper = quality_specs.ROWS["cartpole-medium"], quality_specs.ROWS["hopper-medium"]

    def run(row: str, suite: str, algo: str, side: str = "ours", **hp: Any) -> dict[str, Any]:
        overrides = {"target_return": 500.0} if algo == "dt" else {}
        now = quality_specs.our_config(scale, suite, algo, **overrides).hyperparameters()
        kept = {k: v for k, v in {**now, **hp}.items() if v != "drop"}
        settings = {"suite": suite, "algo": algo, "hp": kept, "overrides": overrides}
        return {"row": row, "line": algo, "side": side, "record": {"settings": settings}}

    runs = [run("cartpole-medium", "discrete", "dt", init_std="drop"),
            run("cartpole-medium", "discrete", "dt", init_std="drop"),  # another seed
            run("cartpole-medium", "discrete", "cql", side="d3rlpy", lr=1.0),
            run("hopper-medium", "continuous", "iql"),
            run("hopper-medium", "continuous", "td3bc", alpha=9.0, tau=1.0)]  # fmt: skip
    text = quality_report.settings_changed(runs, [cartpole, hopper], scale)
    init_std = quality_specs.our_config(scale, "discrete", "dt").hyperparameters()["init_std"]
    assert text.endswith(f": CartPole-v1 medium Decision Transformer (init_std: not recorded → "
                         f"{init_std}); Hopper-v5 medium TD3+BC (alpha: 9.0 → 2.5, tau: 1.0 → "
                         "0.005)")  # fmt: skip
    assert quality_report.settings_changed(runs[2:4], [cartpole, hopper], scale).endswith(": none")


def test_d3rlpy_dt_context_follows_its_stateful_wrappers_rule() -> None:
    """d3rlpy's acting rule re-stated for the exported step (checked against d3rlpy's own
    StatefulTransformerWrapper in its process): the last K steps left-padded and masked, the
    return-to-go = target − the rewards received so far, timesteps from 1, the actions
    taken before the current step (its slot a zero pad); a reset starts a new episode."""
    from benchmarks._lib.d3rlpy_side import DTContext

    seen: list[tuple[np.ndarray, ...]] = []

    def step(*inputs: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.numpy().copy() for x in inputs))
        return torch.full((1,), float(len(seen)))  # action k at the k-th call

    ctx = DTContext(step, context=3, max_timestep=4, action_size=1, target_return=10.0)
    for k, reward in enumerate([0.0, 1.0, 2.0, 3.0, 4.0]):
        assert ctx(np.full(2, k, np.float32), reward)[0] == k + 1
    obs, act, rtg, t, masks = seen[1]  # the second step: one pad slot
    np.testing.assert_array_equal(masks, [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(obs[:, 0], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(act[:, 0], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(rtg[:, 0], [0.0, 10.0, 9.0])
    np.testing.assert_array_equal(t, [0, 1, 2])
    obs, act, rtg, t, masks = seen[4]  # the fifth: the context slid, timesteps capped
    np.testing.assert_array_equal(masks, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(obs[:, 0], [2.0, 3.0, 4.0])
    np.testing.assert_array_equal(act[:, 0], [3.0, 4.0, 0.0])
    np.testing.assert_array_equal(rtg[:, 0], [7.0, 4.0, 0.0])
    np.testing.assert_array_equal(t, [3, 4, 4])
    ctx.reset()
    ctx(np.zeros(2, np.float32), 0.0)
    obs, act, rtg, t, masks = seen[5]
    np.testing.assert_array_equal(masks, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(rtg[:, 0], [0.0, 0.0, 10.0])
    np.testing.assert_array_equal(t, [0, 0, 1])


def test_d3rlpy_dt_context_discrete_actions() -> None:
    """Discrete actions: the exported step gives logits; the context holds the index of the
    action taken (a float, as d3rlpy's wrapper feeds it), the current slot a zero pad; the
    greedy rule takes the most likely action, the sampling rule draws from softmax(logits)
    with torch's generator."""
    from benchmarks._lib.d3rlpy_side import DTContext

    seen: list[np.ndarray] = []
    logits = torch.tensor([0.0, 3.0, 0.0])

    def step(*inputs: torch.Tensor) -> torch.Tensor:
        seen.append(inputs[1].numpy().copy())
        return logits

    kw: dict[str, Any] = dict(context=3, max_timestep=9, action_size=3, target_return=1.0)
    greedy = DTContext(step, discrete=True, **kw)
    assert [greedy(np.zeros(2, np.float32), 0.0) for _ in range(3)] == [1, 1, 1]
    np.testing.assert_array_equal(seen[-1], [1.0, 1.0, 0.0])
    assert seen[0].shape == (3,)
    torch.manual_seed(0)
    sampled = DTContext(step, discrete=True, sample=True, **kw)
    draws = [sampled(np.zeros(2, np.float32), 0.0) for _ in range(200)]
    assert isinstance(draws[0], int) and set(draws) == {0, 1, 2}
    p1 = float(torch.softmax(logits, dim=0)[1])  # 0.91: about 182 of 200
    assert abs(draws.count(1) / 200 - p1) < 0.06
    np.testing.assert_array_equal(seen[-1], [*map(float, draws[-3:-1]), 0.0])


def test_d3rlpy_venv_sees_this_environments_packages(tmp_path: Path) -> None:
    """The d3rlpy venv is made with ``--system-site-packages``, which reaches the *base*
    interpreter's packages; when this interpreter runs in a venv of its own (as the README's
    set-up does), its worker could not import tianshou (every d3rlpy job failed with
    ModuleNotFoundError). ``_see_this_environment`` makes a venv see this environment's
    site-packages after its own."""
    import subprocess
    import sys

    from benchmarks._lib import peers

    venv = tmp_path / "v"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
    )
    peers._see_this_environment(venv)
    peers._see_this_environment(venv)  # idempotent
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import h5py, gymnasium; print(h5py.__file__)"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-500:]
    if sys.prefix != sys.base_prefix:  # the case the bug was: packages of this venv only
        pth = list(venv.glob("lib/python*/site-packages/_tianshou_offline_parent_env.pth"))
        assert len(pth) == 1
        assert probe.stdout.startswith(tuple(pth[0].read_text().split()))

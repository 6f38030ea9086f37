"""D4RL-style dataset families (``tianshou_offline.datasets``, ``tianshou-offline
make-datasets``) for a tiny custom environment defined here, the reference scores they store,
``normalized_score`` reading them, and the MountainCar recording → DiscreteCQL row of
``benchmarks/quality_table.py``."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from tests.helpers.examples import folder_on_path
from tianshou_offline import load_buffer, read_metadata
from tianshou_offline.converters.d4rl_scores import normalized_score, reference_scores
from tianshou_offline.datasets import (
    LEVELS,
    DQNParams,
    FamilyConfig,
    FamilyResult,
    SACParams,
    make_datasets,
)
from tianshou_offline.errors import DataValidationError, OutputExistsError, SourceNotFoundError

REPO = Path(__file__).resolve().parents[2]
ENTRY = f"{__name__}:ReachEnv"
"""This module's tiny environment as an entry point (``module:Class``)."""


class ReachEnv(gym.Env[np.ndarray, Any]):
    """A point on a line moves towards a target: observation ``(x, target)``, reward
    ``-|x - target|``, 20 steps. Discrete (left, stay, right) or continuous (a step in
    ``[-1, 1]``) actions."""

    def __init__(self, discrete: bool = True) -> None:
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.action_space: gym.Space[Any] = (
            gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        )
        self.discrete = discrete
        self.x = self.target = 0.0
        self.t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-1, 1))
        self.target = float(self.np_random.uniform(-1, 1))
        self.t = 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return np.array([self.x, self.target], dtype=np.float32)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = int(action) - 1 if self.discrete else float(np.asarray(action).reshape(-1)[0])
        self.x = float(np.clip(self.x + 0.2 * np.clip(a, -1, 1), -2, 2))
        self.t += 1
        return self._obs(), -abs(self.x - self.target), False, self.t >= 20, {}


NotAnEnv = 3  # an entry point that is not an environment


def tiny_config(**changes: Any) -> FamilyConfig:
    base = FamilyConfig(
        budget=300,
        dataset_steps=100,
        reference_episodes=100,
        eval_episodes=3,
        checkpoint_every=100,
        dqn=DQNParams(hidden_sizes=(16,), start_steps=30, target_update_freq=20, batch_size=32),
        sac=SACParams(hidden_sizes=(16,), start_steps=30, batch_size=32, updates_per_step=0.5),
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> FamilyResult:
    out = tmp_path_factory.mktemp("family") / "reach"
    return make_datasets(ENTRY, out, config=tiny_config(), max_episode_steps=20)


def _columns(path: Path) -> dict[str, np.ndarray]:
    buf = load_buffer(path)
    batch = buf[np.arange(len(buf))]
    return {
        k: np.asarray(batch[k])
        for k in ("obs", "act", "rew", "terminated", "truncated", "obs_next")
    }


def test_a_family_of_a_custom_env_has_five_files_with_reference_scores(
    family: FamilyResult,
) -> None:
    assert tuple(family.levels) == LEVELS
    assert {p.name for p in family.output.iterdir()} >= {f"{lv}.hdf5" for lv in LEVELS}
    lo, hi = family.reference_scores
    assert hi > lo  # the online agent learned: its expert beats uniform random actions
    manifest = json.loads((family.output / "family.json").read_text())
    assert manifest["reference_scores"]["random"]["episodes"] == 100
    for level, r in family.levels.items():
        md = read_metadata(r.path)
        assert md.env_id == ENTRY and md.num_transitions == r.num_transitions > 0
        assert md.provenance is not None
        extra = md.provenance.extra
        assert (extra["ref_min_score"], extra["ref_max_score"]) == (lo, hi)
        assert float(md.extra_attrs["ref_min_score"]) == lo
        assert extra["level"] == level and extra["family_seed"] == 0
        assert extra["env"]["entry_point"] == ENTRY and extra["env"]["max_episode_steps"] == 20
        assert extra["sizes"] == {"transitions": r.num_transitions, "episodes": r.num_episodes}
        assert md.provenance.dataset_id == f"{ENTRY}/{level}"
        assert manifest["files"][level]["transitions"] == r.num_transitions
    medium_md = read_metadata(family.levels["medium"].path)
    assert medium_md.provenance is not None
    policy = medium_md.provenance.extra["policy"]
    assert policy["env_step"] == family.medium.env_step
    assert len(policy["sha256"]) == 64 and (family.output / policy["checkpoint"]).is_file()
    # medium-replay: the online run's transitions up to the medium checkpoint
    assert family.levels["medium-replay"].num_transitions == family.medium.env_step
    both = family.levels["medium"].num_transitions + family.levels["expert"].num_transitions
    assert family.levels["medium-expert"].num_transitions == both
    assert family.levels["medium"].num_transitions >= 100  # whole episodes: at least the size
    # the checkpoints replay with `record --policy`
    from tianshou_offline.recording.policies import make_policy

    env = gym.make(gym.envs.registration.EnvSpec(id=ENTRY, entry_point=ENTRY, max_episode_steps=20))
    act = make_policy(str(family.output / policy["checkpoint"]), env)
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(act(obs))


def test_normalized_score_reads_a_family_file(family: FamilyResult) -> None:
    lo, hi = family.reference_scores
    path = family.levels["expert"].path
    assert reference_scores(path) == (lo, hi)
    assert normalized_score(path, hi) == pytest.approx(100.0)  # D4RL's 0–100 scale
    assert normalized_score(str(path), lo) == pytest.approx(0.0, abs=1e-9)
    assert normalized_score("hopper-medium-v2", 3234.3) == pytest.approx(100.0)  # D4RL's table
    with pytest.raises(SourceNotFoundError, match="hopper-medium-v9|unknown"):
        normalized_score("hopper-medium-v9", 1.0)


def test_the_examples_read_a_family_files_reference_scores(family: FamilyResult) -> None:
    with folder_on_path(REPO / "examples" / "mujoco"):
        common = importlib.import_module("d4rl_common")
        dataset = common.load_dataset(str(family.levels["medium"].path), "unused")
    assert dataset.ref_scores == family.reference_scores
    _, hi = family.reference_scores
    assert common.normalized_score(hi, dataset.ref_scores) == pytest.approx(100.0)


def test_a_rerun_continues_and_skips_complete_files(family: FamilyResult) -> None:
    again = make_datasets(ENTRY, family.output, config=tiny_config(), max_episode_steps=20)
    assert again.resumed_from == 300
    assert all(r.skipped for r in again.levels.values())
    assert again.reference_scores == family.reference_scores


def test_same_seed_same_data_and_an_interrupted_run_resumes(
    family: FamilyResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tianshou_offline.datasets import online

    real_save = online._save_state
    calls = {"n": 0}
    replaced: list[bool] = []

    def save_then_die(path: Path, state: dict[str, Any], *, overwrite: bool) -> None:
        replaced.append(overwrite)
        real_save(path, state, overwrite=overwrite)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed right after the second checkpoint

    monkeypatch.setattr(online, "_save_state", save_then_die)
    out = tmp_path / "reach"
    with pytest.raises(KeyboardInterrupt):
        make_datasets(ENTRY, out, config=tiny_config(), max_episode_steps=20)
    # a new run's first state never replaces one that appeared; later ones replace its own
    assert replaced == [False, True]
    monkeypatch.setattr(online, "_save_state", real_save)
    resumed = make_datasets(ENTRY, out, config=tiny_config(), max_episode_steps=20)
    assert resumed.resumed_from == 200
    strip = [dataclasses.replace(c, sha256="") for c in resumed.checkpoints]
    assert strip == [dataclasses.replace(c, sha256="") for c in family.checkpoints]
    assert resumed.reference_scores == family.reference_scores
    for level in LEVELS:
        a, b = _columns(family.levels[level].path), _columns(resumed.levels[level].path)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{level}/{key}")


def test_a_continuous_family_with_sac(tmp_path: Path) -> None:
    config = tiny_config(budget=200, levels=("medium", "medium-replay"), reference_episodes=20)
    result = make_datasets(ENTRY, tmp_path / "c", config=config, env_kwargs={"discrete": False})
    assert result.algorithm == "sac" and set(result.levels) == {"medium", "medium-replay"}
    cols = _columns(result.levels["medium"].path)
    assert cols["act"].shape[1:] == (1,) and np.all(np.abs(cols["act"]) <= 1.0)
    md = read_metadata(result.levels["medium"].path)
    assert md.provenance is not None and md.provenance.extra["env"]["kwargs"] == {"discrete": False}
    assert not (tmp_path / "c" / "random.hdf5").exists()


DEAD_PID = 2**22 + 12345  # above Linux's default pid_max: never a running process


def _temp_of(output: Path, pid: int, tag: str = "") -> Path:
    """A temporary of ``output`` named as ``data/atomic.temp_path`` names them, of ``pid``."""
    t = output.with_name(f".{output.name}.{pid}.0123abcd{'.' + tag if tag else ''}.tmp")
    t.write_bytes(b"half-written")
    return t


def test_a_rerun_removes_temporaries_of_killed_runs(family: FamilyResult) -> None:
    out = family.output
    dead = [
        _temp_of(out / "family.json", DEAD_PID),
        _temp_of(out / "medium.hdf5", DEAD_PID),
        _temp_of(out / "online" / "state.pt", DEAD_PID, "state"),
    ]
    live = _temp_of(out / "expert.hdf5", os.getpid())  # a running process's: kept
    try:
        make_datasets(ENTRY, out, config=tiny_config(), max_episode_steps=20)
        assert not any(p.exists() for p in dead) and live.exists()
    finally:
        live.unlink()


def test_a_directory_holding_only_a_killed_runs_temporary_is_empty(tmp_path: Path) -> None:
    from tianshou_offline.datasets import family as fam

    out = tmp_path / "reach"
    out.mkdir()
    stale = _temp_of(out / "family.json", DEAD_PID)
    manifest, continued = fam._prepare_output(out, {"seed": 0}, overwrite=False)
    assert manifest["settings"] == {"seed": 0} and not continued and not stale.exists()
    (out / "notes.txt").write_text("mine")
    _temp_of(out / "family.json", DEAD_PID)
    with pytest.raises(OutputExistsError, match=r"not empty \(notes.txt\)"):
        fam._prepare_output(out, {"seed": 0}, overwrite=False)


def test_a_manifest_that_appears_meanwhile_is_left_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tianshou_offline.datasets import family as fam

    real_prepare = fam._prepare_output

    def prepare_then_race(out: Path, settings: Any, overwrite: bool) -> tuple[dict[str, Any], bool]:
        prepared = real_prepare(out, settings, overwrite)
        (out / "family.json").write_text("another run's")  # e.g. a second make-datasets
        return prepared

    monkeypatch.setattr(fam, "_prepare_output", prepare_then_race)
    out = tmp_path / "reach"
    with pytest.raises(OutputExistsError, match="appeared while this run was writing it"):
        make_datasets(ENTRY, out, config=tiny_config(), max_episode_steps=20)
    assert sorted(p.name for p in out.iterdir()) == ["family.json"]  # no temporary left
    assert (out / "family.json").read_text() == "another run's"


def test_the_online_state_is_published_without_replacing_another_runs(tmp_path: Path) -> None:
    import torch

    from tianshou_offline.datasets.online import _save_state

    path = tmp_path / "state.pt"
    stale = _temp_of(path, DEAD_PID, "state")
    _save_state(path, {"step": 1}, overwrite=False)
    assert not stale.exists() and torch.load(path, weights_only=True) == {"step": 1}
    with pytest.raises(OutputExistsError, match="state.pt"):
        _save_state(path, {"step": 2}, overwrite=False)
    assert torch.load(path, weights_only=True) == {"step": 1}
    _save_state(path, {"step": 3}, overwrite=True)
    assert torch.load(path, weights_only=True) == {"step": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temporary left


def test_other_settings_in_the_same_directory_are_refused(family: FamilyResult) -> None:
    with pytest.raises(OutputExistsError, match="seed: found 0, expected 1"):
        make_datasets(ENTRY, family.output, config=tiny_config(seed=1), max_episode_steps=20)


def test_bad_settings_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="'sac' needs Box actions"):
        make_datasets(ENTRY, tmp_path / "x", config=tiny_config(algorithm="sac"))
    with pytest.raises(DataValidationError, match="levels"):
        make_datasets(ENTRY, tmp_path / "x", config=tiny_config(levels=("hard",)))
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------ CLI


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from tianshou_offline.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("NoSuchEnv-v0", "not a registered gymnasium id"),
        ("no_such_module_xyz:Env", "cannot import module 'no_such_module_xyz'"),
        (f"{__name__}:Missing", "has no such attribute 'Missing'"),
        (f"{__name__}:NotAnEnv", "has a int 'NotAnEnv'"),
    ],
)
def test_cli_bad_env_is_one_error_line(
    env: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _cli(["make-datasets", "--env", env, "-o", str(tmp_path / "out")], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_an_existing_output_without_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = _cli(["make-datasets", "--env", ENTRY, "-o", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "not empty (notes.txt)" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_cli_makes_a_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "make-datasets", "--env", ENTRY, "-o", str(tmp_path / "f"), "--budget", "200",
        "--dataset-steps", "40", "--reference-episodes", "10", "--eval-episodes", "2",
        "--hidden-sizes", "16", "--batch-size", "16", "--start-steps", "20",
        "--levels", "random,medium-replay", "--max-episode-steps", "20",
    ]  # fmt: skip
    code, out, err = _cli(argv, capsys)
    assert code == 0, err
    assert "random.hdf5: " in out and "medium-replay.hdf5: " in out and "reference scores" in out
    code, out, _ = _cli(argv, capsys)  # rerun: resumed, files verified
    assert code == 0 and out.count("complete, verified") == 2


def test_cli_level_names_are_the_librarys() -> None:
    from tianshou_offline.cli.datasets import LEVEL_NAMES

    assert LEVEL_NAMES == LEVELS


# ------------------------------------------------------------------ MountainCar row


def _mountaincar_cql(path: Path, steps: int) -> tuple[dict[str, Any], float, float]:
    import torch

    from benchmarks._lib.quality_specs import SCALES, batch_size, our_config
    from benchmarks._lib.quality_workers import evaluate_policy, train_ours

    lo, hi = reference_scores(path)
    scale = SCALES["small"]
    spec = {
        "env": "MountainCar-v0", "suite": "discrete", "algo": "cql", "seed": 0,
        "file": str(path), "gradient_steps": steps, "eval_episodes": 3,
        "preset": scale.preset, "batch_size": batch_size(scale, "discrete", "cql"),
        "hp": our_config(scale, "discrete", "cql").hyperparameters(),
        "outputs": {"cql": "default"},
    }  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        policies, seconds = train_ours(spec)
        result = evaluate_policy(spec, policies[0]["cql"])
    assert seconds > 0 and math.isfinite(result["score"])
    assert result["score"] == pytest.approx(100 * (result["return_mean"] - lo) / (hi - lo))
    return result, lo, hi


def test_mountaincar_recording_to_discrete_cql(tmp_path: Path) -> None:
    """The row's path end to end (small budget): scripted ε-random episodes recorded with
    EpisodeRecorder, the reference scores stored with them, DiscreteCQL trained on the file,
    evaluated and scored with the file's reference scores."""
    from benchmarks._lib.quality_data import record_mountain_car

    path = record_mountain_car(tmp_path / "mc.hdf5", episodes=5, eps=0.3, reference_episodes=5)
    md = read_metadata(path)
    assert md.num_episodes == 5 and md.provenance is not None
    assert md.provenance.extra["policy"].startswith("scripted energy pumping")
    lo, hi = reference_scores(path)
    assert lo == -200.0 and -160.0 < hi < -80.0  # random never reaches the goal
    _mountaincar_cql(path, steps=100)


@pytest.mark.slow
def test_discrete_cql_learns_mountaincar_from_recorded_episodes(tmp_path: Path) -> None:
    """DiscreteCQL on 20 recorded episodes reaches the goal (a return above −200, which
    random actions and an untrained network never get)."""
    from benchmarks._lib.quality_data import record_mountain_car

    path = record_mountain_car(tmp_path / "mc.hdf5", episodes=20, eps=0.3, reference_episodes=5)
    result, _, _ = _mountaincar_cql(path, steps=4000)
    assert result["return_mean"] > -200.0, result

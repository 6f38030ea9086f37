"""Seed batches (``tianshou_offline.algorithms.seeds``): K seeds trained as one batched
program must follow, seed by seed, the trajectories of K separate plain runs.

Every plain run is built as ``torch.manual_seed(s)`` then ``make_algorithm`` and trains with
``update(buffer, B)`` on the global generator (swapped in per seed), so it draws its own
mini-batches and noise; the batch draws each seed's with that seed's generator. Statistics
are compared at every step and parameters (targets and optimizer moments included, through
each seed's plain checkpoint) at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.data import Batch, ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

from tianshou_offline.algorithms.registry import make_algorithm
from tianshou_offline.algorithms.seeds import SeedBatchStats, make_seed_batch
from tianshou_offline.errors import DataValidationError

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
DISCRETE_ACT = gym.spaces.Discrete(3)
SEEDS = (10, 11, 12)
SMALL: dict[str, Any] = {"hidden_sizes": (16, 16)}


@pytest.fixture(scope="module")
def buffer() -> ReplayBuffer:
    """500 continuous transitions: terminations and truncations, actions inside the bounds."""
    rng = np.random.default_rng(0)
    n = 500
    buf = ReplayBuffer(n)
    obs = rng.standard_normal((n + 1, 5)).astype(np.float32)
    for i in range(n):
        buf.add(
            Batch(
                obs=obs[i],
                act=rng.uniform(-2, 2, 2).astype(np.float32),
                rew=float(obs[i, 0] + rng.standard_normal()),
                terminated=i % 97 == 96,
                truncated=i % 50 == 49,
                obs_next=obs[i + 1],
                info={},
            )
        )
    return buf


@pytest.fixture(scope="module")
def discrete_buffer(buffer: ReplayBuffer) -> ReplayBuffer:
    """The same transitions with discrete actions in ``0..2``."""
    rng = np.random.default_rng(1)
    n = len(buffer)
    buf = ReplayBuffer(n)
    for i in range(n):
        buf.add(
            Batch(
                obs=buffer.obs[i],
                act=int(rng.integers(3)),
                rew=float(buffer.rew[i]),
                terminated=bool(buffer.terminated[i]),
                truncated=bool(buffer.truncated[i]),
                obs_next=buffer.obs_next[i],
                info={},
            )
        )
    return buf


class PlainRuns:
    """K plain algorithms, each stepping on its own copy of the global generator."""

    def __init__(
        self, name: str, buffer: ReplayBuffer, act_space: gym.Space[Any] = ACT, **overrides: Any
    ) -> None:
        self.algorithms: list[Any] = []
        self.states: list[torch.Tensor] = []
        with torch.random.fork_rng(devices=[]):
            for seed in SEEDS:
                torch.manual_seed(seed)
                self.algorithms.append(
                    make_algorithm(name, OBS, act_space, preset="small", **overrides)
                )
                self.states.append(torch.get_rng_state())
        for a in self.algorithms:
            a.process_buffer(buffer)
        self.buffer = buffer

    def update(self, batch_size: int) -> list[dict[str, float]]:
        out = []
        with torch.random.fork_rng(devices=[]):
            for k, a in enumerate(self.algorithms):
                torch.set_rng_state(self.states[k])
                with policy_within_training_step(a.policy):
                    out.append(a.update(self.buffer, batch_size).get_loss_stats_dict())
                self.states[k] = torch.get_rng_state()
        return out


def assert_close_stats(plain: dict[str, float], batched: dict[str, float], where: str) -> None:
    assert plain.keys() == batched.keys(), where
    for key, value in plain.items():
        assert batched[key] == pytest.approx(value, rel=1e-3, abs=1e-4), f"{where}: {key}"


def assert_close_states(plain: dict[str, Any], batched: dict[str, Any], where: str) -> None:
    """Two plain-algorithm checkpoints (parameters, targets, optimizer moments, step count)."""
    assert plain.keys() == batched.keys(), where
    for key, value in plain.items():
        other = batched[key]
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(other, value, rtol=1e-3, atol=1e-4, msg=f"{where}: {key}")
        elif isinstance(value, dict):
            assert_close_states(value, other, f"{where}.{key}")
        elif isinstance(value, list):
            assert len(value) == len(other), f"{where}.{key}"
            for i, (a, b) in enumerate(zip(value, other, strict=True)):
                if isinstance(a, dict):
                    assert_close_states(a, b, f"{where}.{key}[{i}]")
                elif isinstance(a, float):
                    assert a == pytest.approx(b, rel=1e-3, abs=1e-4), f"{where}.{key}[{i}]"
                else:  # ints, flags, None (pytest >= 9.2's approx refuses None)
                    assert a == b, f"{where}.{key}[{i}]"
        else:
            assert other == value, f"{where}: {key}"


CASES: list[tuple[str, dict[str, Any], int]] = [
    ("td3bc", {}, 200),
    ("td3bc", {"max_grad_norm": 0.05}, 100),  # a clip that binds: per seed and critic member
    ("iql", {}, 200),
    ("cql", {"num_sampled_actions": 4}, 200),
    # the Lagrange form's large critic losses make a ReLU kink flip within float rounding
    # after a few dozen steps (both sides then stay correct but part ways): fewer steps
    ("cql", {"num_sampled_actions": 3, "with_lagrange": True, "lagrange_threshold": 1.0}, 30),
    ("rebrac", {}, 100),
    ("bcq", {"vae_hidden_sizes": (16, 16), "num_sampled_actions": 3}, 100),
    ("crr", {"num_sampled_actions": 3, "target_update_freq": 3}, 200),
    ("crr", {"num_critics": 2, "weight": "binary", "advantage": "max"}, 100),
    ("il", {}, 100),
    ("il", {"actor": "gaussian"}, 100),
    ("cql", {"num_sampled_actions": 3, "calibrated": True}, 60),  # Cal-QL
    ("awac", {"num_sampled_actions": 3, "max_weight": 1.5}, 60),  # a weight clip that binds
    ("awac", {"num_sampled_actions": 2, "normalize_weights": True}, 30),
    ("sacn", {"num_critics": 3}, 60),
    ("edac", {"num_critics": 3}, 60),
    ("lbsac", {"num_critics": 3, "batch_size": 32}, 40),
    # the IQL authors' cosine schedule of the actor's learning rate
    ("iql", {"actor_cosine_steps": 60}, 60),
    ("discrete/il", {}, 60),
    # at step 25 a nearly dead trunk unit (Adam's second moment ~2e-10) gets a gradient
    # through a ReLU kink in one run and not the other (float rounding); Adam turns it into
    # lr-sized steps and the parameters part by ~1e-4 with equal losses: 24 steps (4 copies)
    ("discrete/bcq", {"target_update_freq": 7}, 24),
    ("discrete/cql", {"num_quantiles": 8, "target_update_freq": 7}, 60),
    ("discrete/cql", {"num_quantiles": 1, "double_q": True}, 40),  # the 1-quantile form
    ("discrete/crr", {"target_update_freq": 7}, 60),
    ("discrete/crr", {"policy_improvement_mode": "binary", "advantage": "max"}, 30),
]
"""(algorithm, overrides of the small preset, steps): 200 steps for the quality table's
rows (TD3+BC, IQL, CQL), 100 for the others, 30-60 for the later cases (the suite's time
budget); ``discrete/`` names train on discrete actions."""


@pytest.mark.parametrize(
    ("name", "overrides", "steps"), CASES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)]
)
def test_each_seed_follows_its_single_run(
    buffer: ReplayBuffer,
    discrete_buffer: ReplayBuffer,
    name: str,
    overrides: dict[str, Any],
    steps: int,
) -> None:
    batch_size = 32
    settings = {**SMALL, **overrides}
    act_space: gym.Space[Any] = ACT
    if name.startswith("discrete/"):
        name, act_space, buffer = name.removeprefix("discrete/"), DISCRETE_ACT, discrete_buffer
    plain = PlainRuns(name, buffer, act_space, **settings)
    batch = make_seed_batch(name, OBS, act_space, seeds=SEEDS, preset="small", **settings)
    batch.process_buffer(buffer)
    with policy_within_training_step(batch.policy):
        for step in range(steps):
            stats = batch.update(buffer, batch_size)
            assert isinstance(stats, SeedBatchStats)
            expected = plain.update(batch_size)
            for k, seed_stats in enumerate(stats.seeds):
                assert type(seed_stats) is plain.algorithms[k].stats_type
                assert_close_stats(
                    expected[k], seed_stats.get_loss_stats_dict(), f"step {step} seed {k}"
                )
    for k, algorithm in enumerate(plain.algorithms):
        assert_close_states(algorithm.state_dict(), batch.seed_state_dict(k), f"seed {k}")
    # the seeds really differ (different initialisations and mini-batches)
    first = [p.detach() for p in batch.members[0].parameters()]
    second = [p.detach() for p in batch.members[1].parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))


def without_key_bias(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the attention's key biases zeroed. Attention is invariant to them (a
    key bias adds the same amount to every score of a query), so their gradient is float
    rounding only, which AdamW turns into learning-rate-sized steps: two runs of the same
    update walk them apart, without any effect on what the network computes."""
    out = dict(state)
    for name, value in state.items():
        if name.endswith("self_attn.in_proj_bias"):
            h = value.shape[0] // 3  # query, key, value biases
            out[name] = torch.cat([value[:h], torch.zeros_like(value[h : 2 * h]), value[2 * h :]])
    return out


DT_CASES: list[tuple[str, dict[str, Any], int]] = [
    # dropout 0.1: each seed's forward draws its masks from its own generator
    ("dt", {"dropout": 0.1}, 40),
    ("dt", {"dropout": 0.0}, 30),  # no dropout
    ("discrete/dt", {"dropout": 0.1, "max_grad_norm": 0.05}, 30),  # a clip that binds
]
"""(algorithm, overrides, steps) of the Decision Transformer: a small network (16 units, 2
blocks of 2 heads, context 4: segments padded at the episodes' ends), a warm-up of 20 steps
(the learning rate changes over the run), AdamW with weight decay."""


@pytest.mark.parametrize(
    ("name", "overrides", "steps"),
    DT_CASES,
    ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(DT_CASES)],
)
def test_each_dt_seed_follows_its_single_run(
    buffer: ReplayBuffer,
    discrete_buffer: ReplayBuffer,
    name: str,
    overrides: dict[str, Any],
    steps: int,
) -> None:
    """As :func:`test_each_seed_follows_its_single_run`, for the Decision Transformer: each
    seed samples its own segments and, with dropout, its own masks (the single run's)."""
    settings = {"embed_dim": 16, "n_layers": 2, "n_heads": 2, "context": 4, "max_timestep": 128,
                "warmup_steps": 20, "weight_decay": 0.1, "lr": 1e-3, **overrides}  # fmt: skip
    act_space: gym.Space[Any] = ACT
    if name.startswith("discrete/"):
        name, act_space, buffer = name.removeprefix("discrete/"), DISCRETE_ACT, discrete_buffer
    plain = PlainRuns(name, buffer, act_space, **settings)
    batch = make_seed_batch(name, OBS, act_space, seeds=SEEDS, preset="small", **settings)
    batch.process_buffer(buffer)
    lrs = set()
    with policy_within_training_step(batch.policy):
        for step in range(steps):
            stats = batch.update(buffer, 16)
            assert isinstance(stats, SeedBatchStats)
            expected = plain.update(16)
            for k, seed_stats in enumerate(stats.seeds):
                assert type(seed_stats) is plain.algorithms[k].stats_type
                assert_close_stats(
                    expected[k], seed_stats.get_loss_stats_dict(), f"step {step} seed {k}"
                )
            lrs.add(expected[0]["lr"])
    assert len(lrs) == 20  # the warm-up ran inside the test
    for k, algorithm in enumerate(plain.algorithms):
        assert_close_states(
            without_key_bias(algorithm.state_dict()),
            without_key_bias(batch.seed_state_dict(k)),
            f"seed {k}",
        )
    first = [p.detach() for p in batch.members[0].parameters()]
    second = [p.detach() for p in batch.members[1].parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_seed_checkpoint_continues_as_a_plain_run(buffer: ReplayBuffer) -> None:
    """A seed's plain checkpoint, loaded into a plain algorithm, continues as that seed of
    the batch does; loading it back into another batch restores the seed."""
    batch = make_seed_batch("td3bc", OBS, ACT, seeds=SEEDS, preset="small", **SMALL)
    batch.process_buffer(buffer)
    with policy_within_training_step(batch.policy):
        for _ in range(15):
            batch.update(buffer, 32)
    state = batch.seed_state_dict(1)
    rng = batch.rng.generators[1].get_state()

    plain = make_algorithm("td3bc", OBS, ACT, preset="small", **SMALL)
    plain.load_state_dict(dict(state))  # Tianshou pops its optimizers key
    plain.process_buffer(buffer)
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(rng)
        with policy_within_training_step(plain.policy):
            for _ in range(10):
                plain.update(buffer, 32)
    with policy_within_training_step(batch.policy):
        for _ in range(10):
            batch.update(buffer, 32)
    untyped: Any = plain  # Tianshou's state_dict is untyped
    assert_close_states(untyped.state_dict(), batch.seed_state_dict(1), "resumed seed 1")

    other = make_seed_batch("td3bc", OBS, ACT, seeds=(0, 1, 2), preset="small", **SMALL)
    other.process_buffer(buffer)
    other._num_updates = batch.num_updates
    other.load_seed_state_dict(2, batch.seed_state_dict(1))
    assert_close_states(batch.seed_state_dict(1), other.seed_state_dict(2), "loaded")
    # the whole batch round-trips through its own state_dict
    again = make_seed_batch("td3bc", OBS, ACT, seeds=(5, 6, 7), preset="small", **SMALL)
    whole: Any = batch  # Tianshou's state_dict is untyped
    again.load_state_dict(whole.state_dict())
    for k in range(3):
        assert_close_states(batch.seed_state_dict(k), again.seed_state_dict(k), f"whole {k}")
    with pytest.raises(ValueError, match="step"):
        fresh = make_seed_batch("td3bc", OBS, ACT, seeds=(0, 1, 2), preset="small", **SMALL)
        fresh.load_seed_state_dict(0, state)


def test_offline_trainer_and_policies(buffer: ReplayBuffer) -> None:
    """Tianshou's OfflineTrainer trains a batch; its log has every seed's statistics; the
    K policies act in the environment's action space."""
    from tianshou.trainer import OfflineTrainerParams
    from tianshou.utils import LazyLogger

    logged: list[dict[str, Any]] = []

    class Keep(LazyLogger):
        def log_update_data(self, log_data: dict[str, Any], step: int) -> None:
            logged.append(log_data)

    batch = make_seed_batch("iql", OBS, ACT, seeds=2, preset="small", **SMALL)
    before = [p.detach().clone() for p in batch.members[1].policy.parameters()]
    batch.run_training(
        OfflineTrainerParams(
            buffer=buffer,
            max_epochs=1,
            epoch_num_steps=5,
            batch_size=16,
            test_collector=None,
            show_progress=False,
            verbose=False,
            logger=Keep(),
        )
    )
    assert batch.num_updates == 5
    assert logged and "seed1/critic_loss" in str(logged[-1])
    after = list(batch.members[1].policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    obs = Batch(obs=np.zeros((4, 5), np.float32), info={})
    for policy in batch.policies():
        act = policy.map_action(policy(obs).act)
        assert np.all(np.abs(np.asarray(act)) <= 2.0)


def test_rejects_what_it_cannot_batch() -> None:
    from tianshou_offline.algorithms.seeds import seed_batch_of

    with pytest.raises(DataValidationError, match="object: no seed-batched form"):
        seed_batch_of([object()])
    with pytest.raises(DataValidationError, match="at least one seed"):
        make_seed_batch("td3bc", OBS, ACT, seeds=[], preset="small")


GRID_ALGORITHMS: dict[str, dict[str, list[Any]]] = {
    "td3bc": {"hidden_sizes": [[8, 8]]},
    # conditioned on the data's best episode return, as a single cell is
    "dt": {"embed_dim": [8], "n_layers": [1], "n_heads": [1], "context": [3]},
}


@pytest.mark.parametrize("algorithm", list(GRID_ALGORITHMS))
def test_grid_trains_a_groups_seeds_as_one_batch(tmp_path: Path, algorithm: str) -> None:
    """``seed_batch: true``: one process trains both seeds of a group; each seed is recorded
    in its own cell directory as a single cell would be (result, policy, curve, the Decision
    Transformer's target return), its policy is the batch's seed, and a rerun skips the
    finished cells."""
    from tianshou_offline.cli import main
    from tianshou_offline.data.stats import episode_table
    from tianshou_offline.scale import grid as sg

    data = tmp_path / "pendulum.hdf5"
    assert main(["record", "--env", "Pendulum-v1", "--policy", "random", "--episodes", "2",
                 "-o", str(data)]) == 0  # fmt: skip
    spec = tmp_path / "grid.json"
    budget = {"epochs": 1, "steps_per_epoch": 5, "batch_size": 16, "test_episodes": 1,
              "eval_episodes": 1}  # fmt: skip
    spec.write_text(json.dumps({
        "output": str(tmp_path / "runs"), "datasets": [str(data)],
        "algorithms": {algorithm: GRID_ALGORITHMS[algorithm]}, "seeds": 2, "budget": budget,
        "seed_batch": True,
    }))  # fmt: skip
    grid = sg.load_grid(spec)
    assert grid.seed_batch
    first = sg.run_grid(grid, use_ray=False)
    assert not first.failures and len(first.results) == 2
    pids = {r["pid"] for r in first.results}
    assert len(pids) == 1 and all(r["seed_batch"] == 2 for r in first.results)
    best = float(np.max(episode_table(data).returns)) if algorithm == "dt" else None
    for r in first.results:
        assert (Path(r["dir"]) / "policy.pt").is_file() and len(r["curve"]) == 2
        assert r["gradient_steps"] == 5
        assert r["target_return"] == (best if best is None else pytest.approx(best))
    policies = [torch.load(Path(r["dir"]) / "policy.pt", weights_only=True) for r in first.results]
    assert str(policies[0]) != str(policies[1])  # two seeds, two policies
    again = sg.run_grid(grid, use_ray=False)
    assert all(r["skipped"] for r in again.results)
    with pytest.raises(DataValidationError, match="seed_batch"):
        sg.grid_from_mapping({**json.loads(spec.read_text()), "seed_batch": "yes"})


def test_a_grid_seed_group_trains_lbsac_at_the_budgets_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seed group's LB-SAC takes its learning rate from the batch the cells train at (the
    budget's), as a single cell's does (trained_batch_overrides), not from the preset's
    batch_size (1024 in ``small``)."""
    from tianshou_offline.algorithms.continuous.lb_sac import sqrt_scaled_lr
    from tianshou_offline.cli import main
    from tianshou_offline.scale import algorithms as scale_algorithms
    from tianshou_offline.scale import seed_group
    from tianshou_offline.scale.grid_spec import Budget, Cell

    data = tmp_path / "pendulum.hdf5"
    assert main(["record", "--env", "Pendulum-v1", "--policy", "random", "--episodes", "1",
                 "-o", str(data)]) == 0  # fmt: skip
    built: list[Any] = []
    real = scale_algorithms.build_seed_batch

    class Built(Exception):
        pass

    def build_and_stop(*args: Any, **kwargs: Any) -> Any:
        built.append(real(*args, **kwargs))
        raise Built

    monkeypatch.setattr(scale_algorithms, "build_seed_batch", build_and_stop)
    budget = Budget(batch_size=64)
    cells = [Cell("lbsac", str(data), seed=s, budget=budget,
                  overrides={"hidden_sizes": [8, 8], "num_critics": 2}) for s in (0, 1)]  # fmt: skip
    dirs = [tmp_path / f"cell{s}" for s in (0, 1)]
    for d in dirs:
        d.mkdir()
    with pytest.raises(Built):
        seed_group._train_group(cells, dirs)
    (batch,) = built
    assert all(m.learning_rate == pytest.approx(sqrt_scaled_lr(64)) for m in batch.members)

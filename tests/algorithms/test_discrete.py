"""Discrete-action algorithms: CartPole-v1 return thresholds on expert data gathered as
Tianshou's offline tests do, exactness of the efficient quantile loss and of frame-indexed
sampling, typed-stats extension, checkpoints, Tianshou ``Batch`` inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, Collector, CollectStats, ReplayBuffer, VectorReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OfflineTrainerParams
from tianshou.utils.torch_utils import policy_within_training_step

from benchmarks._lib.experts.cartpole import TASK, cached_expert_file
from tianshou_offline import load_buffer
from tianshou_offline.algorithms import (
    DiscreteActorPolicy,
    DiscreteBCQ,
    DiscreteBCQPolicy,
    DiscreteCQL,
    DiscreteCQLTrainingStats,
    DiscreteCRR,
    DiscreteImitationLearning,
    DiscreteOfflineAlgorithm,
    DualHeadNet,
    FrameDataset,
    MLPTrunk,
    QNet,
    QuantileQNet,
    QValuePolicy,
)
from tianshou_offline.algorithms.discrete.cql import (
    DiscreteCQLStep,
    quantile_huber_loss,
    quantile_huber_loss_pairwise,
    quantile_midpoints,
)
from tianshou_offline.data.columns import buffer_from_columns

CARTPOLE = gym.make(TASK)
TEST_EPISODES = 20


@pytest.fixture(scope="session")
def expert_file(expert_data_dir: Path) -> Path:
    """CartPole-v1 expert data: Tianshou QR-DQN trained to a test return >= 190, 20k steps
    at ε = 0.2 (gathered once per test session, ~1 min)."""
    return cached_expert_file(expert_data_dir)


# --------------------------------------------------------------------------- builders


def make_il(seed: int) -> DiscreteImitationLearning:
    torch.manual_seed(seed)
    net = QNet(MLPTrunk(4, [64]), 2, [64])
    policy = DiscreteActorPolicy(actor=net, action_space=CARTPOLE.action_space)
    return DiscreteImitationLearning(policy=policy, optim=AdamOptimizerFactory(lr=1e-3))


def make_bcq(seed: int) -> DiscreteBCQ:
    torch.manual_seed(seed)
    net = DualHeadNet(MLPTrunk(4, [64]), 2, [64])
    policy = DiscreteBCQPolicy(
        model=net, action_space=CARTPOLE.action_space, unlikely_action_threshold=0.6
    )
    return DiscreteBCQ(
        policy=policy,
        optim=AdamOptimizerFactory(lr=3e-4),
        n_step_return_horizon=3,
        target_update_freq=320,
        imitation_logits_penalty=0.01,
    )


def make_cql(seed: int) -> DiscreteCQL:
    torch.manual_seed(seed)
    net = QuantileQNet(MLPTrunk(4, [64]), 2, num_quantiles=200)
    policy = QValuePolicy(model=net, action_space=CARTPOLE.action_space)
    return DiscreteCQL(
        policy=policy,
        optim=AdamOptimizerFactory(lr=3e-3),
        min_q_weight=10.0,
        n_step_return_horizon=3,
        target_update_freq=500,
    )


def make_crr(seed: int) -> DiscreteCRR:
    torch.manual_seed(seed)
    net = DualHeadNet(MLPTrunk(4, [64]), 2, [64])
    policy = DiscreteActorPolicy(actor=net, action_space=CARTPOLE.action_space, logits_index=0)
    return DiscreteCRR(policy=policy, optim=AdamOptimizerFactory(lr=7e-4), target_update_freq=320)


BUILDERS: dict[str, Callable[[int], DiscreteOfflineAlgorithm[Any, Any]]] = {
    "il": make_il,
    "bcq": make_bcq,
    "cql": make_cql,
    "crr": make_crr,
}


def best_test_return(
    algorithm: DiscreteOfflineAlgorithm[Any, Any],
    buffer: ReplayBuffer,
    *,
    threshold: float,
    epochs: int,
    steps: int,
    batch_size: int,
    seed: int = 0,
) -> float:
    """Train with Tianshou's OfflineTrainer until the mean test return over 20 episodes
    reaches ``threshold`` (Tianshou's tests stop the same way) or the budget ends."""
    test_envs = DummyVectorEnv([lambda: gym.make(TASK) for _ in range(TEST_EPISODES)])
    test_envs.seed(seed)
    result = algorithm.run_training(
        OfflineTrainerParams(
            buffer=buffer,
            test_collector=Collector[CollectStats](algorithm, test_envs),
            max_epochs=epochs,
            epoch_num_steps=steps,
            batch_size=batch_size,
            test_step_num_episodes=TEST_EPISODES,
            stop_fn=lambda mean_return: mean_return >= threshold,
            show_progress=False,
            verbose=False,
        )
    )
    return float(result.best_reward)


FINAL_THRESHOLD = 150.0
"""Mean return of the final policy over TEST_EPISODES fresh episodes (random: about 26)."""


def final_return(
    algorithm: DiscreteOfflineAlgorithm[Any, Any], *, episodes: int, seed: int
) -> float:
    """Mean return of ``episodes`` fresh CartPole-v1 episodes of the policy as it is now."""
    envs = DummyVectorEnv([lambda: gym.make(TASK) for _ in range(episodes)])
    envs.seed(seed)
    stats = Collector[CollectStats](algorithm, envs).collect(
        n_episode=episodes, reset_before_collect=True
    )
    assert stats.returns_stat is not None and stats.n_collected_episodes == episodes
    return float(stats.returns_stat.mean)


# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize(
    ("name", "threshold", "epochs", "steps", "batch_size"),
    [
        ("bcq", 185.0, 5, 2000, 64),
        ("cql", 170.0, 5, 1000, 32),
        ("crr", 180.0, 5, 1000, 64),
        ("il", 150.0, 5, 1000, 64),
    ],
)
def test_cartpole_threshold(
    expert_file: Path, name: str, threshold: float, epochs: int, steps: int, batch_size: int
) -> None:
    buffer = load_buffer(expert_file)
    algorithm = BUILDERS[name](0)
    best = best_test_return(
        algorithm, buffer, threshold=threshold, epochs=epochs, steps=steps, batch_size=batch_size
    )
    assert best >= threshold, f"{name}: best mean test return {best:.1f} < {threshold}"
    # the final policy, evaluated afresh: the best per-epoch return includes the test before
    # training. Measured (100 episodes): a uniformly random policy 26.0, a constant action 9.3;
    # the final policies scored 186 (bcq) to 252 (cql) when FINAL_THRESHOLD was set.
    final = final_return(algorithm, episodes=TEST_EPISODES, seed=5000)
    assert final >= FINAL_THRESHOLD, f"{name}: final policy's mean return {final:.1f}"


# --------------------------------------------------------------------------- quantile loss


@pytest.mark.parametrize(
    ("b", "n", "m", "scale", "kappa"),
    [
        (32, 200, 200, 1.0, 1.0),
        (5, 7, 11, 3.0, 0.5),
        (8, 200, 200, 100.0, 1.0),
        (4, 51, 13, 0.01, 2.0),
    ],
)
def test_quantile_huber_loss_matches_pairwise(
    b: int, n: int, m: int, scale: float, kappa: float
) -> None:
    gen = torch.Generator().manual_seed(b * n + m)
    current = (torch.randn(b, n, generator=gen, dtype=torch.float64) * scale + 7.0).requires_grad_()
    target = torch.randn(b, m, generator=gen, dtype=torch.float64) * scale + 7.0
    weights = torch.rand(b, generator=gen, dtype=torch.float64)
    tau = quantile_midpoints(n).double()
    ref = quantile_huber_loss_pairwise(current, target, tau, kappa)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), current)
    fast = quantile_huber_loss(current, target, tau, kappa)
    (g_fast,) = torch.autograd.grad((fast * weights).sum(), current)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-10, atol=1e-12)


def test_quantile_huber_loss_ties_and_float32() -> None:
    # targets equal to predictions and at exactly ±κ: value and gradient still match
    current = torch.tensor([[0.0, 1.0, 2.0, 3.0]], requires_grad=True)
    target = torch.tensor([[0.0, 2.0, 3.0, 4.0, -1.0]])
    tau = quantile_midpoints(4)
    ref = quantile_huber_loss_pairwise(current, target, tau)
    (g_ref,) = torch.autograd.grad(ref.sum(), current)
    fast = quantile_huber_loss(current, target, tau)
    (g_fast,) = torch.autograd.grad(fast.sum(), current)
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(g_fast, g_ref)


# --------------------------------------------------------------------------- sampling


def _columns(lengths: list[int], frame_shape: tuple[int, ...], seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    term = np.zeros(n, bool)
    trunc = np.zeros(n, bool)
    ends = np.cumsum(lengths) - 1
    term[ends[::2]] = True
    trunc[ends[1::2]] = True
    return {
        "obs": rng.integers(0, 255, size=(n, *frame_shape), dtype=np.uint8),
        "act": rng.integers(0, 3, size=n),
        "rew": rng.normal(size=n),
        "terminated": term,
        "truncated": trunc,
    }


def _assert_dataset_matches(buffer: ReplayBuffer, dataset: FrameDataset) -> None:
    indices = np.sort(buffer.sample_indices(0))
    batch = buffer[indices]
    got = dataset.gather(torch.arange(len(indices)))
    np.testing.assert_array_equal(
        got.obs.numpy(), np.asarray(batch.obs).astype(got.obs.numpy().dtype)
    )
    np.testing.assert_array_equal(
        got.obs_next.numpy(), np.asarray(batch.obs_next).astype(got.obs.numpy().dtype)
    )
    np.testing.assert_array_equal(got.act.numpy(), np.asarray(batch.act))


def test_frame_dataset_compact_stacked_buffer() -> None:
    buffer = buffer_from_columns(
        _columns([5, 1, 7, 3], (6, 5)), stack_num=4, save_only_last_obs=True
    )
    dataset = FrameDataset.from_buffer(buffer)
    _assert_dataset_matches(buffer, dataset)
    assert dataset.frames.shape == (16, 6, 5)  # one frame per step, shared with the buffer
    assert dataset.frames.data_ptr() == torch.from_numpy(buffer._meta.obs).data_ptr()
    assert dataset.obs_index.shape == (16, 4)


def test_frame_dataset_tianshou_vector_buffer_with_stacking() -> None:
    # Tianshou's own Atari-style buffer: circular sub-buffers, one frame per step
    buf = VectorReplayBuffer(
        12, buffer_num=2, stack_num=3, ignore_obs_next=True, save_only_last_obs=True
    )
    rng = np.random.default_rng(0)
    for t in range(17):
        frames = rng.integers(0, 255, size=(2, 3, 4, 4), dtype=np.uint8)
        done = np.array([t % 5 == 4, t % 7 == 6])
        buf.add(
            Batch(
                obs=frames,
                act=rng.integers(0, 3, size=2),
                rew=rng.normal(size=2),
                terminated=done,
                truncated=np.zeros(2, bool),
                obs_next=frames,
                info=[{}, {}],
            ),
            buffer_ids=[0, 1],
        )
    dataset = FrameDataset.from_buffer(buf)
    _assert_dataset_matches(buf, dataset)


def test_frame_dataset_obs_next_column_and_n_step() -> None:
    cols = _columns([4, 6], (3,))
    cols["obs"] = cols["obs"].astype(np.float32)
    cols["obs_next"] = cols["obs"] + 1000.0
    buffer = buffer_from_columns(cols)
    dataset = FrameDataset.from_buffer(buffer, gamma=0.5, n_step=3)
    got = dataset.gather(torch.arange(10))
    rew, term = cols["rew"], cols["terminated"] | np.zeros(10, bool)
    # row 0: r0 + .5 r1 + .25 r2, bootstrap from obs_next[2] with .125
    assert got.rew[0].item() == pytest.approx(rew[0] + 0.5 * rew[1] + 0.25 * rew[2], rel=1e-6)
    assert got.discount[0].item() == pytest.approx(0.125)
    np.testing.assert_array_equal(got.obs_next[0].numpy(), cols["obs_next"][2])
    # row 2: stops at the terminal row 3
    assert got.rew[2].item() == pytest.approx(rew[2] + 0.5 * rew[3], rel=1e-6)
    assert got.discount[2].item() == 0.0 and term[3]
    # row 9 ends a truncated episode: it still bootstraps
    assert got.discount[9].item() == pytest.approx(0.5)
    assert got.terminated[9].item() == 0.0


def test_frame_dataset_honours_stack_patches() -> None:
    from tianshou_offline.data import framestack

    plain = buffer_from_columns(_columns([5, 4], (2, 2)), stack_num=3, save_only_last_obs=True)
    patch_obs = np.full((1, 3, 2, 2), 7, np.uint8)
    patch_next = np.full((1, 3, 2, 2), 9, np.uint8)
    buf = framestack.FrameStackReplayBuffer.from_buffer(
        plain,
        obs_patches=(np.array([5]), patch_obs),
        obs_next_patches=(np.array([8]), patch_next),
    )
    dataset = FrameDataset.from_buffer(buf)
    _assert_dataset_matches(buf, dataset)
    got = dataset.gather(torch.tensor([5, 8]))
    assert (got.obs[0] == 7).all() and (got.obs_next[1] == 9).all()


def test_frame_dataset_rejects_bad_actions() -> None:
    buffer = buffer_from_columns({**_columns([4], (2,)), "act": np.arange(4)})
    with pytest.raises(ValueError, match="actions span"):
        FrameDataset.from_buffer(buffer, num_actions=2)


# --------------------------------------------------------------------------- API


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_update_on_tianshou_batch_and_checkpoint_roundtrip(name: str, tmp_path: Path) -> None:
    cols = _columns([30, 20], (4,))
    cols["obs"] = cols["obs"].astype(np.float32)
    cols["act"] = cols["act"] % 2
    buffer = buffer_from_columns(cols)
    algorithm = BUILDERS[name](0)
    with policy_within_training_step(algorithm.policy):
        stats = algorithm.update(buffer, 16)  # device-resident sampling
        batch, indices = buffer.sample(16)
        # a Tianshou numpy Batch, through Tianshou's own path (n-step targets attached)
        stats_batch = algorithm._update_with_batch(
            algorithm._preprocess_batch(batch, buffer, indices)
        )
    assert np.isfinite(stats.loss) and np.isfinite(stats_batch.loss)
    assert stats.train_time > 0
    saved: Any = algorithm  # Tianshou's Algorithm.state_dict (with optimizers) is untyped
    torch.save(saved.state_dict(), tmp_path / "policy.pth")
    restored = BUILDERS[name](1)
    restored.load_state_dict(torch.load(tmp_path / "policy.pth", weights_only=True))
    obs = Batch(obs=cols["obs"][:8], info={})
    np.testing.assert_array_equal(algorithm.policy(obs).act, restored.policy(obs).act)


def test_update_outside_training_step_is_an_error() -> None:
    buffer = buffer_from_columns({**_columns([10], (4,)), "act": np.zeros(10, int)})
    algorithm = make_il(0)
    with pytest.raises(RuntimeError, match="training step"):
        algorithm.update(buffer, 4)


def test_eps_greedy_inference() -> None:
    algorithm = make_cql(0)
    policy = algorithm.policy
    obs = Batch(obs=np.zeros((2000, 4), np.float32), info={})
    greedy = policy(obs).act
    assert len(np.unique(greedy)) == 1
    policy.set_eps_inference(1.0)
    noisy = policy.add_exploration_noise(greedy.copy(), obs)
    assert 0.4 < float(np.mean(noisy != greedy)) < 0.6  # uniform over 2 actions


def test_bcq_policy_masks_unlikely_actions() -> None:
    net = DualHeadNet(MLPTrunk(4, [8]), 3, [])
    policy = DiscreteBCQPolicy(
        model=net, action_space=gym.spaces.Discrete(3), unlikely_action_threshold=0.5
    )
    with torch.no_grad():
        for head in (net.first, net.second):
            for p in head.parameters():
                p.zero_()
        q_out = net.first[-1]
        g_out = net.second[-1]
        assert isinstance(q_out, torch.nn.Linear) and isinstance(g_out, torch.nn.Linear)
        q_out.bias.copy_(torch.tensor([0.0, 5.0, 1.0]))  # Q: action 1 best
        g_out.bias.copy_(torch.tensor([2.0, -3.0, 1.9]))  # G(1|s) tiny
    act = policy(Batch(obs=np.zeros((1, 4), np.float32), info={})).act
    assert act.tolist() == [2]  # the best allowed action


# A user's subclass with its own typed statistics; tests/test_static.py holds this module to
# mypy --strict (tests/ is in mypy's files), so the generic DiscreteCQL[_GapStats] must
# type-check as written, with no ``type: ignore``.
@dataclass(kw_only=True)
class _GapStats(DiscreteCQLTrainingStats):
    q_gap: float = 0.0


class _GapCQL(DiscreteCQL[_GapStats]):
    def _extend_stats(self, stats: _GapStats, step: DiscreteCQLStep) -> None:
        stats.q_gap = float((step.q.max(dim=1).values - step.q.min(dim=1).values).mean())


def test_stats_subclass_without_copying_the_update() -> None:
    base = make_cql(0)
    algorithm = _GapCQL(
        policy=base.policy, optim=AdamOptimizerFactory(lr=1e-3), n_step_return_horizon=1
    )
    cols = {**_columns([40], (4,)), "act": np.zeros(40, int)}
    cols["obs"] = cols["obs"].astype(np.float32)
    buffer = buffer_from_columns(cols)
    with policy_within_training_step(algorithm.policy):
        stats = algorithm.update(buffer, 8)
    assert isinstance(stats, _GapStats)
    assert stats.q_gap > 0


@pytest.mark.parametrize("name", ["il", "bcq", "cql"])
def test_one_update_matches_tianshou(name: str) -> None:
    """Given the same mini-batch, initial weights and hyperparameters, one gradient step of
    ours equals one of Tianshou 2.0.1's (n-step targets, losses, optimizer step)."""
    from benchmarks._lib.sides_discrete import (
        CARTPOLE,
        build_ours,
        build_tianshou,
        synthetic_buffer,
    )

    buffer = synthetic_buffer(CARTPOLE, 2000, 50)
    ours: Any = build_ours(name, CARTPOLE, 0)  # typed as Tianshou's base
    theirs = build_tianshou(name, CARTPOLE, 0)
    for a, b in zip(ours.policy.parameters(), theirs.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    np.random.seed(0)
    batch, indices = buffer.sample(64)
    with policy_within_training_step(ours.policy), policy_within_training_step(theirs.policy):
        stats_theirs: Any = theirs._update_with_batch(
            theirs._preprocess_batch(batch, buffer, indices)
        )
        dataset = ours.dataset_for(buffer)
        stats_ours: Any = ours._update_with_batch(dataset.gather(torch.as_tensor(indices)))
    assert stats_ours.loss == pytest.approx(stats_theirs.loss, rel=1e-5)
    for a, b in zip(ours.policy.parameters(), theirs.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["il", "bcq", "cql"])
def test_paired_training_matches_tianshou(name: str) -> None:
    """Through the trainers' entry point (``update``: sampling, n-step targets across episode
    ends), with the parity benchmark's paired sampling (Tianshou's buffer draws the indices our
    dataset draws), 60 steps of ours and of Tianshou 2.0.1 end at the same parameters — what
    ``benchmarks/parity_discrete.py`` relies on to compare implementations rather than draws.

    No target sync after the first within the 60 steps: at a sync step Tianshou computes the
    targets before copying the network (a one-step-older target at every C-th step), ours
    after, as DQN's Algorithm 1 (Mnih et al. 2015). CRR is left out: Tianshou's actor loss
    differs (see docs/ATARI.md)."""
    from benchmarks._lib.sides_discrete import (
        CARTPOLE,
        build_ours,
        build_tianshou,
        synthetic_buffer,
    )
    from benchmarks.parity_discrete import _TorchIndexSampler

    sync: dict[str, Any] = {} if name == "il" else {"target_update_freq": 1000}
    buffer = synthetic_buffer(CARTPOLE, 2000, 50)
    ours = build_ours(name, CARTPOLE, 0, **sync)
    theirs = build_tianshou(name, CARTPOLE, 0, **sync)
    buffer_rng = buffer._random_state
    cast(Any, buffer)._random_state = _TorchIndexSampler()  # numpy's RandomState API
    try:
        for algorithm in (ours, theirs):
            algorithm.process_buffer(buffer)
            torch.manual_seed(123)
            with policy_within_training_step(algorithm.policy):
                for _ in range(60):
                    algorithm.update(buffer, CARTPOLE.batch_size(name))
    finally:
        buffer._random_state = buffer_rng
    for a, b in zip(ours.policy.parameters(), theirs.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)

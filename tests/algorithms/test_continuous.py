"""Tests of the continuous-control algorithms (IL, BCQ, CQL, CRR, TD3+BC).

Fast tests check the pieces on small synthetic data: n-step targets and episode
boundaries, action/observation mapping, the critic ensemble, log-densities, typed generic
statistics, checkpoints and Tianshou's numpy-Batch entry point.

Slow tests (``-m slow``) train on real expert data, gathered the way Tianshou's offline tests
gather it (SAC on Pendulum-v1 to a test return >= -250, then 20k exploring steps; cached for
the session, see ``benchmarks/_lib/experts/pendulum.py``), and require the *final* policy of each
algorithm, evaluated afresh over 20 episodes after training, to reach a mean return of −400
(a random or zero-torque policy scores about −1280; see ``PENDULUM_RETURNS``); they also
smoke-test every ``examples/mujoco/d4rl_*.py`` script.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.algorithm.algorithm_base import TrainingStats
from tianshou.algorithm.optim import AdamOptimizerFactory as Adam
from tianshou.data import Batch, Collector, CollectStats, ReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OfflineTrainerParams
from tianshou.utils.torch_utils import policy_within_training_step

from benchmarks._lib.experts.pendulum import cached_expert_file
from tests.helpers.continuous import ACT_SPACE, OBS_SPACE, H, evaluate, make, synthetic_buffer
from tests.helpers.examples import folder_on_path, import_example
from tests.helpers.pendulum import SHORT_TASK
from tianshou_offline.algorithms import (
    CQL,
    CRR,
    BCQTrainingStats,
    CQLStep,
    CQLTrainingStats,
    CriticEnsemble,
    CriticWeightedPolicy,
    CRRTrainingStats,
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    ImitationTrainingStats,
    OfflineAlgorithmBase,
    TD3BCTrainingStats,
    TransitionDataset,
    Transitions,
    resolve_stats_type,
)
from tianshou_offline.algorithms.continuous.policies import gaussian_log_prob, gaussian_sample

REPO = Path(__file__).resolve().parents[2]


ALL = ["il", "il_gaussian", "bcq", "cql", "cql_lagrange", "crr", "crr_binary", "td3bc"]
STATS_TYPES: dict[str, type[TrainingStats]] = {
    "il": ImitationTrainingStats,
    "il_gaussian": ImitationTrainingStats,
    "bcq": BCQTrainingStats,
    "cql": CQLTrainingStats,
    "cql_lagrange": CQLTrainingStats,
    "crr": CRRTrainingStats,
    "crr_binary": CRRTrainingStats,
    "td3bc": TD3BCTrainingStats,
}


# ------------------------------------------------------------------------------ data


def test_dataset_n_step_targets_respect_episode_ends() -> None:
    buf = synthetic_buffer(n=200, episode=10, terminate_every=2)
    policy = DeterministicPolicy(
        actor=DeterministicActor(3, 1, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
    )
    gamma, n = 0.9, 3
    data = TransitionDataset.from_buffer(buf, policy=policy, gamma=gamma, n_step=n).data
    rew = buf.rew
    for i in range(200):
        ep, t = divmod(i, 10)
        m = min(n, 10 - t)  # steps until the episode ends
        expected = sum(gamma**k * rew[i + k] for k in range(m))
        last = i + m - 1
        terminated = t + m == 10 and ep % 2 == 0
        assert data.rew[i].item() == pytest.approx(expected, rel=1e-5)
        assert data.discount[i].item() == pytest.approx(0.0 if terminated else gamma**m)
        assert data.terminated[i].item() == float(terminated)
        np.testing.assert_allclose(data.obs_next[i].numpy(), buf.obs_next[last], rtol=1e-6)
    # actions are mapped from the env's [-2, 2] to the policy's [-1, 1]
    np.testing.assert_allclose(data.act.numpy(), buf.act / 2.0, atol=1e-6)


def test_dataset_one_step_and_truncation_bootstraps() -> None:
    buf = synthetic_buffer(n=100, episode=10, terminate_every=2)
    policy = DeterministicPolicy(
        actor=DeterministicActor(3, 1, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
    )
    data = TransitionDataset.from_buffer(buf, policy=policy, gamma=0.99).data
    np.testing.assert_allclose(data.rew.numpy(), buf.rew, rtol=1e-6)
    expected = 0.99 * (1.0 - buf.terminated.astype(np.float64))
    np.testing.assert_allclose(data.discount.numpy(), expected, rtol=1e-6)
    assert data.discount[19].item() == pytest.approx(0.99)  # truncated: still bootstraps
    assert data.discount[9].item() == 0.0  # terminated


def test_obs_normalizer_is_fitted_and_saved_with_the_policy() -> None:
    buf = synthetic_buffer()
    algo = make("td3bc")
    algo.process_buffer(buf)
    norm = algo.policy.obs_normalizer
    np.testing.assert_allclose(norm.mean.numpy(), buf.obs.mean(0), atol=1e-5)
    np.testing.assert_allclose(norm.std.numpy(), buf.obs.std(0) + 1e-3, rtol=1e-4)
    dataset = algo.dataset_for(buf)
    assert isinstance(dataset, TransitionDataset)
    data = dataset.data
    np.testing.assert_allclose(data.obs.mean(0).numpy(), 0.0, atol=1e-5)
    state = algo.policy.state_dict()
    assert "obs_normalizer.mean" in state and "obs_normalizer.std" in state


def test_sampling_is_device_resident_and_seeded() -> None:
    """The batches are a stream seeded once from torch's global generator (SampleStream):
    the same global seed gives two algorithms the same batches, batch after batch, and draws
    from the global generator between batches (an update's noise) do not move them."""
    buf = synthetic_buffer()
    algo, other = make("il"), make("il")
    dataset, twin = algo.dataset_for(buf), other.dataset_for(buf)
    torch.manual_seed(3)
    a = [dataset.sample(64) for _ in range(2)]
    torch.manual_seed(3)
    b = [twin.sample(64)]
    torch.rand(100)  # an update's draws
    b.append(twin.sample(64))
    assert isinstance(a[0], Transitions) and len(a[0]) == 64
    assert a[0].obs.device == algo.device and a[0].obs.dtype == torch.float32
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.obs, y.obs) and torch.equal(x.act, y.act)
    assert not torch.equal(a[0].obs, a[1].obs)  # a stream, not one batch again
    assert a[0].obs.shape == (64, 3) and a[0].act.shape == (64, 1) and a[0].rew.shape == (64,)


# ------------------------------------------------------------------------------ nets


def test_critic_ensemble_matches_per_member_networks() -> None:
    torch.manual_seed(0)
    critics = CriticEnsemble(5, 2, (16, 16), num_critics=3).double()
    obs = torch.randn(4, 5, dtype=torch.float64)
    act = torch.randn(4, 6, 2, dtype=torch.float64)

    def member(e: int, o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        h = torch.cat([o.unsqueeze(1).expand(-1, a.shape[1], -1), a], dim=-1)
        for i, (w, b) in enumerate(zip(critics.weights, critics.biases, strict=True)):
            h = h @ w[e] + b[e]
            h = torch.relu(h) if i < len(critics.weights) - 1 else h
        return h.squeeze(-1)

    reference = torch.stack([member(e, obs, act) for e in range(3)])
    torch.testing.assert_close(critics(obs, act), reference)
    torch.testing.assert_close(critics(obs, act[:, 0]), reference[:, :, 0])
    torch.testing.assert_close(critics(obs, act, member=2), reference[2])
    params = tuple(critics.parameters())
    assert torch.autograd.gradcheck(lambda *p: critics(obs, act), params)
    act_req = act.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: critics(obs, a, detach_params=True), (act_req,))
    q = critics(obs, act_req, detach_params=True).sum()
    q.backward()
    assert all(p.grad is None for p in critics.parameters())


def test_gaussian_log_prob_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    mean, log_std = torch.randn(8, 3), torch.randn(8, 3).clamp(-2, 1)
    normal = torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp()), 1)
    squashed = torch.distributions.TransformedDistribution(
        normal, [torch.distributions.TanhTransform()]
    )
    act, logp = gaussian_sample(mean, log_std, squash=True)
    reference: Any = squashed  # torch.distributions is untyped
    torch.testing.assert_close(logp, reference.log_prob(act), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(
        gaussian_log_prob(mean, log_std, act, squash=True), logp, atol=1e-3, rtol=1e-4
    )
    raw, logp_raw = gaussian_sample(mean, log_std, squash=False, num_samples=5)
    assert raw.shape == (8, 5, 3) and logp_raw.shape == (8, 5)
    untyped_normal: Any = normal
    expected = untyped_normal.log_prob(raw.transpose(0, 1)).transpose(0, 1)
    torch.testing.assert_close(logp_raw, expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ algorithms


@pytest.mark.parametrize("name", ALL)
def test_update_returns_typed_stats_and_learns(name: str) -> None:
    torch.manual_seed(0)
    buf = synthetic_buffer()
    algo = make(name)
    algo.process_buffer(buf)
    before = [p.detach().clone() for p in algo.parameters()]
    with policy_within_training_step(algo.policy):
        stats = [algo.update(buf, 64) for _ in range(4)]
    assert type(stats[-1]) is STATS_TYPES[name]
    assert stats[-1].train_time > 0
    losses = stats[-1].get_loss_stats_dict()
    assert losses and all(math.isfinite(v) for v in losses.values())
    changed = [not torch.equal(a, b) for a, b in zip(before, algo.parameters(), strict=True)]
    assert sum(changed) >= len(changed) // 2
    # Tianshou's own entry point (a numpy Batch) gives the same typed statistics
    batch, _ = buf.sample(32)
    with policy_within_training_step(algo.policy):
        assert type(algo._update_with_batch(batch)) is STATS_TYPES[name]


def test_update_outside_training_step_is_an_error() -> None:
    algo = make("il")
    with pytest.raises(RuntimeError, match="training step"):
        algo.update(synthetic_buffer(), 32)


@pytest.mark.parametrize("name", ["td3bc", "cql", "bcq", "crr"])
def test_targets_track_their_networks(name: str) -> None:
    torch.manual_seed(0)
    buf = synthetic_buffer()
    algo = make(name)
    pairs = algo._target_pairs
    assert pairs and all(not any(p.requires_grad for p in t.parameters()) for _, t in pairs)
    with policy_within_training_step(algo.policy):
        for _ in range(6):
            algo.update(buf, 32)
    for source, target in pairs:
        gaps = [
            (s - t).abs().max().item()
            for s, t in zip(source.parameters(), target.parameters(), strict=True)
        ]
        assert max(gaps) > 0  # lagging, not copied
        assert max(gaps) < 0.5  # but close (τ = 0.005, few steps)


def test_crr_hard_target_updates_every_interval() -> None:
    """tau=1, target_update_freq=3: targets are exact copies taken every 3rd step."""
    torch.manual_seed(0)
    buf = synthetic_buffer()
    algo = make("crr", tau=1.0, target_update_freq=3)
    assert isinstance(algo, CRR)

    def max_gap() -> float:
        return max(
            (s - t).abs().max().item()
            for source, target in algo._target_pairs
            for s, t in zip(source.parameters(), target.parameters(), strict=True)
        )

    with policy_within_training_step(algo.policy):
        gaps = []
        for _ in range(6):
            algo.update(buf, 32)
            gaps.append(max_gap())
    assert gaps[2] == 0.0 and gaps[5] == 0.0  # copied after steps 3 and 6
    assert gaps[0] > 0 and gaps[1] > 0 and gaps[3] > 0 and gaps[4] > 0
    with pytest.raises(ValueError, match="target_update_freq"):
        make("crr", target_update_freq=0)
    with pytest.raises(ValueError, match="tau"):
        make("crr", tau=0.0)


def test_cql_lagrange_multiplier_moves() -> None:
    torch.manual_seed(0)
    buf = synthetic_buffer()
    algo = make("cql_lagrange")
    with policy_within_training_step(algo.policy):
        first = algo.update(buf, 64)
        for _ in range(5):
            last = algo.update(buf, 64)
    assert first.cql_alpha is not None and last.cql_alpha is not None
    assert last.cql_alpha != first.cql_alpha
    assert last.alpha_loss is not None and last.cql_alpha_loss is not None
    fixed = make("cql", alpha=0.1)
    with policy_within_training_step(fixed.policy):
        stats = fixed.update(buf, 64)
    assert (
        stats.alpha == pytest.approx(0.1) and stats.alpha_loss is None and stats.cql_alpha is None
    )


# ------------------------------------------------------------------------------ typed stats


@dataclass(kw_only=True)
class GapStats(CQLTrainingStats):
    q_gap: float = 0.0


class GapCQL(CQL[GapStats]):
    def _extend_stats(self, stats: GapStats, step: CQLStep) -> None:
        stats.q_gap = float((step.q_data.mean() - step.q_random.mean()).item())


def test_generic_stats_subclass_adds_a_field() -> None:
    torch.manual_seed(0)
    buf = synthetic_buffer()
    base = make("cql")
    algo = GapCQL(
        policy=base.policy,
        policy_optim=Adam(lr=1e-3),
        critics=CriticEnsemble(3, 1, H),
        critic_optim=Adam(lr=1e-3),
    )
    with policy_within_training_step(algo.policy):
        stats = algo.update(buf, 64)
    assert type(stats) is GapStats
    assert stats.q_gap != 0.0
    assert "q_gap" in stats.get_loss_stats_dict()
    assert resolve_stats_type(GapCQL) is GapStats
    assert resolve_stats_type(CQL) is CQLTrainingStats

    # parameterising at the call site works as well
    direct = CQL[GapStats](
        policy=make("cql").policy,
        policy_optim=Adam(lr=1e-3),
        critics=CriticEnsemble(3, 1, H),
        critic_optim=Adam(lr=1e-3),
    )
    with policy_within_training_step(direct.policy):
        assert type(direct.update(buf, 32)) is GapStats


def test_extend_stats_example_runs() -> None:
    example = import_example(REPO / "examples", "extend_stats")
    cql_stats, td3bc_stats = example.main(steps=3)
    assert type(cql_stats).__name__ == "MyCQLStats" and math.isfinite(cql_stats.q_gap)
    assert math.isfinite(td3bc_stats.td_error_max)


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("name", ["td3bc", "cql", "bcq", "crr", "il_gaussian"])
def test_checkpoint_round_trip_weights_only(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    buf = synthetic_buffer()
    algo = make(name)
    algo.process_buffer(buf)
    with policy_within_training_step(algo.policy):
        algo.update(buf, 32)
    saved: Any = algo  # Tianshou's Algorithm.state_dict (with optimizers) is untyped
    torch.save(saved.state_dict(), tmp_path / "last.pt")
    torch.save(algo.policy.state_dict(), tmp_path / "policy.pt")
    restored = make(name)
    restored.load_state_dict(torch.load(tmp_path / "last.pt", weights_only=True))
    fresh_policy = make(name).policy
    fresh_policy.load_state_dict(torch.load(tmp_path / "policy.pt", weights_only=True))
    obs = Batch(obs=buf.obs[:7], info=Batch())
    torch.manual_seed(1)
    expected = algo.policy(obs).act
    for policy in (restored.policy, fresh_policy):
        torch.manual_seed(1)
        torch.testing.assert_close(policy(obs).act, expected)
    with policy_within_training_step(restored.policy):
        restored.update(buf, 32)  # optimizer state restored too


def test_bcq_acts_in_the_environments_units() -> None:
    algo = make("bcq")
    out = algo.policy(Batch(obs=np.zeros((5, 3), np.float32), info=Batch())).act
    assert out.shape == (5, 1)
    mapped = algo.policy.map_action(out)
    assert np.all(np.abs(mapped) <= 2.0)


class _Bowl(torch.nn.Module):
    """A one-member 'critic' ``Q(s, a) = −50 ‖a − 0.6‖²``: ``(obs, act (B, N, A)) -> (1, B, N)``."""

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return (-50.0 * (act - 0.6).pow(2).sum(-1)).unsqueeze(0)


def _standard_normal_actor() -> GaussianActor:
    actor = GaussianActor(3, 1, H, conditioned_std=False)
    with torch.no_grad():
        for p in actor.parameters():
            p.zero_()  # mean 0, std 1 in every state
    return actor


def test_critic_weighted_policy_resamples_by_the_critic() -> None:
    """CRR's critic-weighted selection: m proposals from π(·|s), one drawn with probability
    softmax(Q / T). Checked draw for draw against that computation, and in distribution: the
    critic's preferred action (0.6) wins over π's mode (0)."""
    kw: dict[str, Any] = dict(action_space=ACT_SPACE, observation_space=OBS_SPACE)
    m, temperature = 8, 0.5
    policy = CriticWeightedPolicy(
        actor=_standard_normal_actor(),
        critics=_Bowl(),
        num_sampled_actions=m,
        temperature=temperature,
        **kw,
    )
    obs = torch.zeros(6, 3)
    torch.manual_seed(3)
    got = policy.select_action(obs)
    torch.manual_seed(3)
    proposals = torch.randn(6, m, 1).clamp(-1.0, 1.0)  # N(0, 1) samples, clipped as executed
    q = -50.0 * (proposals - 0.6).pow(2).sum(-1)
    probs = torch.exp(q / temperature) / torch.exp(q / temperature).sum(1, keepdim=True)
    choice = torch.multinomial(probs, 1).squeeze(1)
    torch.testing.assert_close(got, proposals[torch.arange(6), choice])

    many = Batch(obs=np.zeros((2000, 3), np.float32), info=Batch())
    torch.manual_seed(0)
    weighted = policy(many).act
    assert abs(float(weighted.mean()) - 0.6) < 0.1 and float(weighted.std()) < 0.3  # π: 0.7
    mode = GaussianPolicy(actor=policy.actor, squash=False, **kw)(many).act
    assert float(torch.as_tensor(mode).abs().max()) == 0.0  # the plain policy: its mean
    hot = CriticWeightedPolicy(
        actor=policy.actor, critics=_Bowl(), num_sampled_actions=m, temperature=1e6, **kw
    )
    torch.manual_seed(0)
    assert abs(float(hot(many).act.mean())) < 0.1  # T → ∞: a plain sample of π
    with pytest.raises(ValueError, match="temperature"):
        CriticWeightedPolicy(actor=policy.actor, critics=_Bowl(), temperature=0.0, **kw)


def test_crr_trains_and_acts_with_the_critic_weighted_policy() -> None:
    torch.manual_seed(0)
    buf = synthetic_buffer()
    critics = CriticEnsemble(3, 1, H)
    kw: dict[str, Any] = dict(action_space=ACT_SPACE, observation_space=OBS_SPACE)
    policy = CriticWeightedPolicy(actor=GaussianActor(3, 1, H), critics=critics, **kw)
    algo = CRR(
        policy=policy,
        policy_optim=Adam(lr=1e-3),
        critics=critics,
        critic_optim=Adam(lr=1e-3),
    )
    with policy_within_training_step(algo.policy):
        stats = algo.update(buf, 32)
    assert math.isfinite(stats.actor_loss)
    act = algo.policy(Batch(obs=buf.obs[:5], info=Batch())).act
    assert act.shape == (5, 1) and np.all(np.abs(algo.policy.map_action(act)) <= 2.0)
    with pytest.raises(ValueError, match="same CriticEnsemble"):
        CRR(
            policy=policy,
            policy_optim=Adam(lr=1e-3),
            critics=CriticEnsemble(3, 1, H),
            critic_optim=Adam(lr=1e-3),
        )


# ------------------------------------------------------------------------------ real training


@pytest.fixture(scope="module")
def expert_path(expert_data_dir: Path) -> Path:
    return cached_expert_file(expert_data_dir)


PENDULUM_RETURNS = {
    # Mean (std) undiscounted return of 50 Pendulum-v1 episodes (seeds 1000–1049), measured
    # for this file with gymnasium 1.x. An EVAL_EPISODES-mean of the first two has a standard
    # error of about 67, so each fails THRESHOLD by more than 13 standard errors. The final
    # policies of ALL scored −154 (cql_lagrange) to −356 (crr_binary) when THRESHOLD was set.
    "uniform random torque": -1279.4,  # std 298
    "zero torque": -1284.1,  # std 304
    "untrained actor (64, 64)": -1220.0,  # about (−1190 to −1330 across the algorithms)
    "expert data (exploring SAC)": -164.7,  # mean episode return of the 20k transitions
}
THRESHOLD = -400.0
"""Mean return the final policy must reach over EVAL_EPISODES fresh episodes."""
STOP_AT = -250.0
"""Training stops early once Tianshou's per-epoch test (10 episodes) reaches this."""
EVAL_EPISODES = 20


def train(
    algo: OfflineAlgorithmBase[Any, Any],
    buffer: ReplayBuffer,
    *,
    seed: int,
    epochs: int,
    steps: int,
    stop_fn: Callable[[float], bool] | None,
) -> float:
    """Train with Tianshou's OfflineTrainer; the best per-epoch test return (which includes
    the test before training)."""
    envs = DummyVectorEnv([lambda: gym.make("Pendulum-v1") for _ in range(10)])
    envs.seed(seed + 100)
    info = algo.run_training(
        OfflineTrainerParams(
            buffer=buffer,
            test_collector=Collector[CollectStats](algo, envs),
            max_epochs=epochs,
            epoch_num_steps=steps,
            test_step_num_episodes=10,
            batch_size=256,
            stop_fn=stop_fn,
            show_progress=False,
            verbose=False,
        )
    )
    return float(info.best_reward)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_reaches_the_return_threshold_on_pendulum(name: str, expert_buffer: ReplayBuffer) -> None:
    """The final policy, evaluated afresh after training, scores >= THRESHOLD — not the best
    per-epoch test return, which includes the untrained policy's test."""
    torch.manual_seed(0)
    np.random.seed(0)
    algo = make(name, hidden=(64, 64))
    train(algo, expert_buffer, seed=0, epochs=10, steps=250, stop_fn=lambda r: r >= STOP_AT)
    final = evaluate(algo, seed=5000, episodes=EVAL_EPISODES)
    assert final >= THRESHOLD, (
        f"{name}: the final policy's mean return over {EVAL_EPISODES} episodes is {final:.1f} "
        f"< {THRESHOLD} (random torque: {PENDULUM_RETURNS['uniform random torque']})"
    )


def test_expert_data_quality(expert_path: Path) -> None:
    from tianshou_offline import read_metadata

    meta = read_metadata(expert_path)
    assert meta.num_transitions == 20_000 and meta.env_id == "Pendulum-v1"
    assert meta.provenance is not None
    assert meta.provenance.extra["sac_best_test_return"] >= -250


EXAMPLES = [
    "d4rl_il",
    "d4rl_bcq",
    "d4rl_cql",
    "d4rl_crr",
    "d4rl_td3_bc",
    "d4rl_iql",
    "d4rl_rebrac",
    "d4rl_sac_n",
    "d4rl_edac",
    "d4rl_lb_sac",
    "d4rl_awac",
    "d4rl_dt",
]


@pytest.fixture
def examples_on_path() -> Iterator[None]:
    with folder_on_path(REPO / "examples" / "mujoco"):
        yield


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES)
def test_example_trains_checkpoints_resumes_and_watches(
    example: str, expert_path: Path, tmp_path: Path, examples_on_path: None
) -> None:
    module = importlib.import_module(example)
    # DT's network is --embed-dim wide: --hidden-sizes only warns there
    sizes = [] if example == "d4rl_dt" else ["--hidden-sizes", "32", "32"]  # dash spelling
    common = [
        "--expert_data_task", str(expert_path),  # underscore spelling
        "--task", SHORT_TASK,  # Pendulum in 20-step episodes: short tests and evaluations
        *sizes,
        "--step-per-epoch", "20",
        "--batch_size", "64",
        "--test-num", "2",
        "--logdir", str(tmp_path),
        "--threads", "1",
        "--show-progress", "0",
        "--log-interval", "5",
    ]  # fmt: skip
    if example == "d4rl_bcq":
        common += ["--vae-hidden-sizes", "32", "32", "--num-candidate-actions", "10"]
    if example in ("d4rl_sac_n", "d4rl_edac", "d4rl_lb_sac"):
        common += ["--num-critics", "3"]
    if example == "d4rl_dt":
        common += ["--context", "4", "--embed-dim", "16", "--n-layers", "1", "--warmup-steps",
                   "5", "--target-return", "-200", "--rtg-scale", "100"]  # fmt: skip
    result = module.main([*common, "--epoch", "1"])
    log_path = Path(result["log_path"])
    assert (log_path / "policy.pt").exists() and (log_path / "last.pt").exists()
    assert list(log_path.glob("events.out.tfevents*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_path))
    events.Reload()
    update_tags = [t for t in events.Tags()["scalars"] if t.startswith("update/")]
    assert len(update_tags) >= 4, update_tags  # the typed training stats reach TensorBoard
    assert math.isfinite(result["final_return_mean"]) and result["normalized_score"] is None
    resumed = module.main([*common, "--epoch", "2", "--resume-path", str(log_path / "last.pt")])
    assert resumed["log_path"] == str(log_path)
    assert resumed["gradient_steps"] == 40  # continued from epoch 1, not restarted
    watched = module.main([*common, "--watch", "--resume-path", str(log_path / "policy.pt")])
    assert math.isfinite(watched["final_return_mean"])


def test_examples_reject_unknown_flags(examples_on_path: None) -> None:
    module = importlib.import_module("d4rl_td3_bc")
    with pytest.raises(SystemExit):
        module.get_args(["--no-such-flag", "1"])
    args = module.get_args(
        ["--expert-data-task", "x.hdf5", "--norm_obs", "0", "--epoch-num-steps", "7"]
    )
    assert args.expert_data_task == "x.hdf5" and args.step_per_epoch == 7
    assert args.algorithm_config().hyperparameters()["normalize_obs"] is False  # --norm_obs 0


def test_critic_ensemble_clips_each_member_separately() -> None:
    torch.manual_seed(0)
    critics = CriticEnsemble(3, 1, (8,), num_critics=2)
    q = critics(torch.randn(16, 3), torch.randn(16, 1))
    (q[0].sum() * 100.0 + q[1].sum() * 1e-3).backward()
    norms = critics.clip_grad_norm_(1.0)
    assert norms[0] > 1.0 and norms[1] < 1.0
    grads = [p.grad for p in critics.parameters() if p.grad is not None]
    after = torch.stack([torch.cat([g[e].flatten() for g in grads]).norm() for e in range(2)])
    assert after[0].item() == pytest.approx(1.0, rel=1e-4)
    assert after[1].item() == pytest.approx(norms[1].item(), rel=1e-6)


def _write_d4rl_layout(path: Path, n: int, obs_dim: int, act_dim: int) -> None:
    import h5py

    rng = np.random.default_rng(0)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[99::100] = True
    with h5py.File(path, "w") as f:
        f["observations"] = rng.standard_normal((n, obs_dim)).astype(np.float32)
        f["next_observations"] = rng.standard_normal((n, obs_dim)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (n, act_dim)).astype(np.float32)
        f["rewards"] = rng.standard_normal(n).astype(np.float32)
        f["terminals"] = np.zeros(n, dtype=bool)
        f["timeouts"] = timeouts


def test_examples_resolve_a_d4rl_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, examples_on_path: None
) -> None:
    from tianshou_offline.converters.d4rl_scores import dataset_info

    info = dataset_info("hopper-medium-v2")
    d4rl_dir = tmp_path / "d4rl"
    d4rl_dir.mkdir()
    _write_d4rl_layout(d4rl_dir / info.filename, 500, obs_dim=11, act_dim=3)
    monkeypatch.setenv("D4RL_DATASET_DIR", str(d4rl_dir))
    common = importlib.import_module("d4rl_common")
    dataset = common.load_dataset("hopper-medium-v2", str(tmp_path / "cache"))
    assert dataset.buffer is not None and len(dataset.buffer) == 500
    assert dataset.env_id == "Hopper-v5"
    assert dataset.ref_scores == (info.ref_min_score, info.ref_max_score)
    assert common.normalized_score(info.ref_max_score, dataset.ref_scores) == pytest.approx(100.0)
    assert dataset.path.parent == tmp_path / "cache" / "d4rl"  # converted once, cached
    again = common.load_dataset("hopper-medium-v2", str(tmp_path / "cache"))
    assert again.path == dataset.path
    with pytest.raises(Exception, match="hopper-medium-v9|not"):
        common.load_dataset("hopper-medium-v9", str(tmp_path / "cache"))


def test_example_on_real_mujoco_halfcheetah(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, examples_on_path: None
) -> None:
    """The README's MuJoCo workflow end to end: a D4RL-named file recorded from the real
    HalfCheetah-v5 (random actions, 1000-step episodes), resolved by name, trained, evaluated
    in MuJoCo and scored against D4RL's reference returns."""
    pytest.importorskip("mujoco")
    import h5py

    from tianshou_offline.converters.d4rl_scores import dataset_info

    info = dataset_info("halfcheetah-random-v2")
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    env = gym.make("HalfCheetah-v5")
    rng = np.random.default_rng(0)
    cols: dict[str, list[Any]] = {k: [] for k in ("obs", "next", "act", "rew", "term", "out")}
    obs, _ = env.reset(seed=0)
    for t in range(2000):
        act = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        nxt, rew, terminated, truncated, _ = env.step(act)
        for key, value in zip(
            cols, (obs, nxt, act, rew, terminated, truncated or t % 1000 == 999), strict=True
        ):
            cols[key].append(value)
        obs = env.reset()[0] if (terminated or truncated or t % 1000 == 999) else nxt
    d4rl_dir = tmp_path / "d4rl"
    d4rl_dir.mkdir()
    with h5py.File(d4rl_dir / info.filename, "w") as f:
        f["observations"] = np.asarray(cols["obs"], dtype=np.float32)
        f["next_observations"] = np.asarray(cols["next"], dtype=np.float32)
        f["actions"] = np.asarray(cols["act"], dtype=np.float32)
        f["rewards"] = np.asarray(cols["rew"], dtype=np.float32)
        f["terminals"] = np.asarray(cols["term"], dtype=bool)
        f["timeouts"] = np.asarray(cols["out"], dtype=bool)
    monkeypatch.setenv("D4RL_DATASET_DIR", str(d4rl_dir))
    module = importlib.import_module("d4rl_td3_bc")
    result = module.main(
        [
            "--expert-data-task", "halfcheetah-random-v2",
            "--hidden-sizes", "32", "32",
            "--epoch", "1",
            "--step-per-epoch", "20",
            "--test-num", "1",
            "--logdir", str(tmp_path / "log"),
            "--threads", "1",
            "--show-progress", "0",
        ]
    )  # fmt: skip
    assert math.isfinite(result["final_return_mean"])
    expected = 100 * (result["final_return_mean"] - info.ref_min_score)
    expected /= info.ref_max_score - info.ref_min_score
    assert result["normalized_score"] == pytest.approx(expected)


@pytest.mark.slow
def test_example_trains_on_a_minari_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, examples_on_path: None
) -> None:
    minari = pytest.importorskip("minari")
    import warnings

    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = gym.make("Pendulum-v1")
    episodes = []
    for i in range(4):
        obs = [env.reset(seed=i)[0]]
        acts, rews = [], []
        for _ in range(200):
            act = env.action_space.sample()
            o, r, _, _, _ = env.step(act)
            obs.append(o)
            acts.append(act)
            rews.append(r)
        truncations = np.zeros(200, dtype=bool)
        truncations[-1] = True
        episodes.append(
            EpisodeBuffer(
                id=i,
                observations=np.array(obs),
                actions=np.array(acts),
                rewards=np.array(rews),
                terminations=np.zeros(200, dtype=bool),
                truncations=truncations,
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            "test/pendulum/random-v0",
            episodes,
            env="Pendulum-v1",
            algorithm_name="random",
            author="tests",
            author_email="tests@example.com",
            code_permalink="https://example.com",
            description="random Pendulum episodes",
            data_format="hdf5",
        )
    module = importlib.import_module("d4rl_cql")
    result = module.main(
        [
            "--expert-data-task", "test/pendulum/random-v0",
            "--task", SHORT_TASK,  # Pendulum in 20-step episodes: short tests and evaluations
            "--data-dir", str(tmp_path / "cache"),
            "--hidden-sizes", "16", "16",
            "--epoch", "1",
            "--step-per-epoch", "10",
            "--test-num", "1",
            "--logdir", str(tmp_path / "log"),
            "--show-progress", "0",
        ]
    )  # fmt: skip
    assert math.isfinite(result["final_return_mean"])
    assert list((tmp_path / "cache" / "minari").glob("*.hdf5"))


def test_paired_parity_il_matches_tianshou() -> None:
    """``benchmarks/parity_continuous.py``'s pairing: Tianshou's networks start from our
    initial weights (copied layer by layer) and its buffer draws the indices our dataset
    draws, so 40 updates of our IL and of Tianshou 2.0.1's end at the same actor, both sides
    having hashed the same index stream. (IL draws no other random numbers, so it must match
    exactly; the other algorithms also consume noise.)"""
    from benchmarks._lib.parity_continuous_sides import build_ours, build_tianshou
    from benchmarks.parity_continuous import BatchStream, batches_from, buffer_sampling

    env = gym.make("Pendulum-v1")
    ours_buf = synthetic_buffer()
    theirs_buf = synthetic_buffer()
    theirs_buf.act[:] = theirs_buf.act / 2.0  # Tianshou trains on policy-range actions
    order = ours_buf.sample_indices(0)
    torch.manual_seed(0)
    ours: Any = build_ours("il", env, list(H))  # typed as Tianshou's Algorithm
    torch.manual_seed(0)
    theirs: Any = build_tianshou("il", env, list(H), init=build_ours("il", env, list(H)))
    for a, b in zip(ours.policy.parameters(), theirs.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    streams = [BatchStream(7, order), BatchStream(7, order)]
    with batches_from(streams[0]), policy_within_training_step(ours.policy):
        for _ in range(40):
            ours.update(ours_buf, 64)
    with buffer_sampling(theirs_buf, streams[1]), policy_within_training_step(theirs.policy):
        for _ in range(40):
            theirs.update(theirs_buf, 64)
    assert streams[0].digest() == streams[1].digest()
    for a, b in zip(ours.policy.parameters(), theirs.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

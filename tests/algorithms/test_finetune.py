"""Offline → online fine-tuning (``OnlineFineTuning``) and Cal-QL (``CQL(calibrated=True)``).

- Cal-QL's conservative term on a fixed batch against an independent computation of the
  paper's objective (Nakamoto et al. 2023, Sec. 5): ``max(Q(s, a_π), V^μ(s))`` for the policy
  proposals, plain Q for the uniform ones.
- ``return_to_go`` against a per-episode loop over a real Tianshou buffer.
- Fine-tuning from an offline checkpoint with Tianshou's ``OffPolicyTrainer`` and
  ``Collector`` on Pendulum-v1: the online buffer fills, every mini-batch holds the requested
  offline share, the offline algorithm's step count continues, and the deterministic actor
  explores with noise.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.algorithm.optim import AdamOptimizerFactory as Adam
from tianshou.data import Batch, Collector, CollectStats, ReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OfflineTrainerParams, OffPolicyTrainerParams
from tianshou.utils.torch_utils import policy_within_training_step

from tests.helpers import buffers as _buffers
from tests.helpers.continuous import make as make_continuous
from tests.helpers.examples import EXAMPLES, import_example
from tests.helpers.pendulum import SHORT_TASK, pendulum_algorithm
from tests.helpers.reference import (
    ACT_SPACE,
    OBS_SPACE,
    SGD,
    A,
    B,
    D,
    H,
    assert_same,
    displace_targets,
    fixed_batch,
    one_update,
    params,
    polyak,
    sgd_step,
    tanh_gaussian,
)
from tianshou_offline.algorithms import (
    AWAC,
    CQL,
    EDAC,
    IQL,
    SACN,
    TD3BC,
    CalQLTransitions,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    OfflineAlgorithmBase,
    OnlineFineTuning,
    ReBRAC,
    TransitionDataset,
    Transitions,
    ValueFunction,
    return_to_go,
)
from tianshou_offline.data.columns import buffer_from_columns

# --------------------------------------------------------------------------- Cal-QL


def test_calql_term_matches_the_paper(monkeypatch: pytest.MonkeyPatch) -> None:
    """One step of CQL(calibrated=True): the conservative gap uses max(Q, V^μ) for the
    proposals from π(·|s) and π(·|s') (each then corrected by its log-density) and plain Q
    for the uniform proposals; the bound is active for some rows and not for others."""
    torch.manual_seed(0)
    algo = CQL(
        policy=GaussianPolicy(
            actor=GaussianActor(D, A, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
        ),
        policy_optim=SGD,
        critics=CriticEnsemble(D, A, H),
        critic_optim=SGD,
        tau=0.05,
        alpha=0.2,
        cql_weight=5.0,
        num_sampled_actions=3,
        calibrated=True,
    )
    displace_targets(algo)
    n, w, alpha = 3, 5.0, 0.2
    actor, critics = copy.deepcopy(algo.policy.actor), copy.deepcopy(algo.critics)
    critics_t = copy.deepcopy(algo.critics_target)
    base = fixed_batch()
    # some bounds bind; −∞: an unfinished episode's row (no bound)
    v_ref = torch.tensor([5.0, -5.0, 0.3, -0.1, 5.0, -math.inf, 0.0, 0.2])
    b = CalQLTransitions(
        obs=base.obs,
        act=base.act,
        rew=base.rew,
        obs_next=base.obs_next,
        discount=base.discount,
        terminated=base.terminated,
        mc_return=v_ref,
    )
    stats = one_update(algo, b, seed=21, monkeypatch=monkeypatch)

    torch.manual_seed(21)
    eps_s, eps_next, uniform = (
        torch.randn(B, n + 1, A),
        torch.randn(B, n + 1, A),
        torch.rand(B, n, A),
    )
    mean, log_std = actor(b.obs)
    act_s, logp_s = tanh_gaussian(mean.unsqueeze(1), log_std.exp().unsqueeze(1), eps_s)
    frozen = copy.deepcopy(critics).requires_grad_(False)
    actor_loss = (alpha * logp_s[:, 0] - frozen(b.obs, act_s[:, 0]).min(0).values).mean()
    with torch.no_grad():
        mean_n, log_std_n = actor(b.obs_next)
        act_n, logp_n = tanh_gaussian(mean_n.unsqueeze(1), log_std_n.exp().unsqueeze(1), eps_next)
        y = b.rew + b.discount * critics_t(b.obs_next, act_n[:, 0]).min(0).values
    bound = v_ref.unsqueeze(1)  # (B, 1)
    critic_loss = torch.zeros(())
    gaps, binding = [], []
    for j in range(2):
        q_data = critics(b.obs, b.act)[j]
        q_pi = critics(b.obs, act_s[:, 1:].detach())[j]
        q_pi_next = critics(b.obs, act_n[:, 1:])[j]
        binding.append((q_pi < bound).float().mean().item())
        terms = [
            critics(b.obs, uniform * 2 - 1)[j] - A * math.log(0.5),  # uniform: no bound
            torch.maximum(q_pi, bound) - logp_s[:, 1:].detach(),
            torch.maximum(q_pi_next, bound) - logp_n[:, 1:],
        ]
        gap = (torch.logsumexp(torch.cat(terms, dim=1), dim=1) - q_data).mean()
        gaps.append(gap)
        critic_loss = critic_loss + ((q_data - y) ** 2).mean() + w * gap
    sgd_step(params(critics), critic_loss)
    sgd_step(params(actor), actor_loss)
    polyak(critics_t, critics, 0.05)

    assert 0.0 < np.mean(binding) < 1.0, "the test must have binding and free bounds"
    assert stats.cql_loss == pytest.approx(torch.stack(gaps).mean().item(), rel=1e-5)
    assert stats.critic_loss == pytest.approx(critic_loss.item(), rel=1e-5)
    assert_same(algo.critics, critics, "critics")
    assert_same(algo.policy.actor, actor, "actor")
    assert_same(algo.critics_target, critics_t, "critics_target")


def _calql(**kw: Any) -> CQL:
    """A small Cal-QL (γ = 0.9) with SGD optimizers."""
    torch.manual_seed(0)
    return CQL(
        policy=GaussianPolicy(
            actor=GaussianActor(D, A, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
        ),
        policy_optim=SGD,
        critics=CriticEnsemble(D, A, H),
        critic_optim=SGD,
        calibrated=True,
        gamma=0.9,
        **kw,
    )


def test_calql_needs_the_return_to_go(monkeypatch: pytest.MonkeyPatch) -> None:
    algo = _calql()
    with pytest.raises(ValueError, match="mc_return"):
        one_update(algo, fixed_batch(), seed=0, monkeypatch=monkeypatch)


def test_return_to_go_matches_a_loop_over_episodes() -> None:
    buf = ReplayBuffer(100)
    _buffers.fill(buf, [7, 1, 12, 5], last_unfinished=True)
    gamma = 0.9
    ours = return_to_go(buf, gamma)
    for rows in _buffers.episodes_of(buf):
        g = 0.0
        for r in rows[::-1]:
            g = float(buf.rew[r]) + gamma * g
            assert ours[r] == pytest.approx(g)


def calql_buffer(*, finish_last: bool) -> ReplayBuffer:
    """Four episodes (γ = 0.9): A terminates with rewards 1, 2, 3; B is truncated and never
    succeeds (−1 throughout); C is truncated after a success (0, 1, −1); D (5, 5) is still
    running — unless ``finish_last``, which adds a third step (reward 5) that terminates."""
    rew = [1.0, 2.0, 3.0, -1.0, -1.0, -1.0, 0.0, 1.0, -1.0, 5.0, 5.0]
    terminated = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    truncated = [0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0]
    if finish_last:
        rew, terminated, truncated = [*rew, 5.0], [*terminated, 1], [*truncated, 0]
    n = len(rew)
    rng = np.random.default_rng(0)
    return buffer_from_columns(
        {
            "obs": rng.normal(size=(n, D)).astype(np.float32),
            "obs_next": rng.normal(size=(n, D)).astype(np.float32),
            "act": rng.uniform(-1, 1, size=(n, A)).astype(np.float32),
            "rew": np.asarray(rew),
            "terminated": np.asarray(terminated, dtype=bool),
            "truncated": np.asarray(truncated, dtype=bool),
        }
    )


INF = math.inf
A_ = [1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3.0]  # episode A: discounted sums (terminated)
C_ = [0 + 0.9 * 1 - 0.81 * 1, 1 - 0.9 * 1, -1.0]  # episode C, partial (truncated)
C_TAIL = [c - 0.9 ** (3 - t) * 10 for t, c in enumerate(C_)]  # + γ^(T−t+1) r_T / (1 − γ)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        # partial sums of the truncated episodes; the running episode D: no bound
        ({}, [*A_, -1 - 0.9 - 0.81, -1 - 0.9, -1.0, *C_, -INF, -INF]),
        # sparse rewards: B never succeeds -> r / (1 − γ) = −10 at every step
        ({"mc_failure_reward": -1.0}, [*A_, -10.0, -10.0, -10.0, *C_, -INF, -INF]),
        # truncated episodes continue with their last reward: + γ^(T−t+1) r_T / (1 − γ)
        (
            {"mc_truncated": "last_reward"},
            [*A_, -10.0, -10.0, -10.0, *C_TAIL, -INF, -INF],
        ),
    ],
    ids=["dense", "sparse", "truncated_last_reward"],
)
def test_calql_reference_values_by_hand(kw: dict[str, Any], expected: list[float]) -> None:
    """``V^μ`` of every row, offline (the dataset) and online (``online_transitions``),
    against values computed by hand (γ = 0.9)."""
    algo = _calql(**kw)
    buf = calql_buffer(finish_last=False)
    dataset = algo.dataset_for(buf)
    assert isinstance(dataset, TransitionDataset)
    data = dataset.data
    assert isinstance(data, CalQLTransitions)
    np.testing.assert_allclose(data.mc_return.numpy(), expected, rtol=1e-6)
    online = algo.online_transitions(buf, np.arange(len(buf)))
    assert isinstance(online, CalQLTransitions)
    np.testing.assert_allclose(online.mc_return.numpy(), expected, rtol=1e-6)


def test_calql_unfinished_online_episode_gets_its_return_once_it_ends() -> None:
    """The rows of an online episode still being collected carry no bound (−∞), the same on
    every sample; once the episode has ended they carry its return-to-go (5 + 0.9·5 +
    0.81·5, 5 + 0.9·5, 5), as offline data would."""
    algo = _calql()
    running = algo.online_transitions(calql_buffer(finish_last=False), np.array([9, 10]))
    assert isinstance(running, CalQLTransitions)
    assert running.mc_return.tolist() == [-INF, -INF]
    ended = algo.online_transitions(calql_buffer(finish_last=True), np.array([9, 10, 11]))
    assert isinstance(ended, CalQLTransitions)
    np.testing.assert_allclose(ended.mc_return.numpy(), [5 + 4.5 + 4.05, 9.5, 5.0], rtol=1e-6)


def test_calql_dataset_and_online_batches_carry_the_return_to_go() -> None:
    rng = np.random.default_rng(0)
    ends = np.zeros(25, dtype=bool)
    ends[[9, 15, 24]] = True
    buf = buffer_from_columns(
        {
            "obs": rng.normal(size=(25, D)).astype(np.float32),
            "obs_next": rng.normal(size=(25, D)).astype(np.float32),
            "act": rng.uniform(-1, 1, size=(25, A)).astype(np.float32),
            "rew": rng.normal(size=25),
            "terminated": ends & (np.arange(25) != 15),
            "truncated": ends & (np.arange(25) == 15),
        }
    )
    algo = _calql()
    expected = return_to_go(buf, 0.9)
    dataset = algo.dataset_for(buf)
    assert isinstance(dataset, TransitionDataset)
    data = dataset.data
    assert isinstance(data, CalQLTransitions)
    np.testing.assert_allclose(data.mc_return.numpy(), expected[:25], rtol=1e-5)
    rows = np.array([0, 3, 9, 10, 24])
    online = algo.online_transitions(buf, rows)
    assert isinstance(online, CalQLTransitions)
    np.testing.assert_allclose(online.mc_return.numpy(), expected[rows], rtol=1e-5)


# --------------------------------------------------------------------------- fine-tuning

TASK = "Pendulum-v1"
MARK = 7.0
"""Reward of every offline transition: online Pendulum rewards are <= 0, so a batch row is
offline exactly when its reward is MARK."""


def offline_pendulum_buffer(steps: int = 600, seed: int = 0) -> ReplayBuffer:
    """Random-action Pendulum transitions (env units) whose rewards are set to MARK."""
    env = gym.make(TASK)
    rng = np.random.default_rng(seed)
    cols: dict[str, list[Any]] = {k: [] for k in ("obs", "act", "obs_next", "terminated")}
    cols["truncated"] = []
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        act = rng.uniform(-2.0, 2.0, size=(1,)).astype(np.float32)
        nxt, _, term, trunc, _ = env.step(act)
        for k, v in (("obs", obs), ("act", act), ("obs_next", nxt), ("terminated", term)):
            cols[k].append(v)
        cols["truncated"].append(trunc)
        obs = env.reset()[0] if term or trunc else nxt
    cols["truncated"][-1] = True
    arrays = {k: np.asarray(v) for k, v in cols.items()}
    arrays["rew"] = np.full(steps, MARK)
    return buffer_from_columns(arrays)


def make_td3bc(env: gym.Env[Any, Any]) -> TD3BC:
    policy = DeterministicPolicy(
        actor=DeterministicActor(3, 1, (32, 32)),
        action_space=env.action_space,
        observation_space=env.observation_space,
        normalize_obs=True,
    )
    return TD3BC(
        policy=policy,
        policy_optim=Adam(lr=1e-3),
        critics=CriticEnsemble(3, 1, (32, 32)),
        critic_optim=Adam(lr=1e-3),
    )


def make_iql(env: gym.Env[Any, Any]) -> IQL:
    policy = GaussianPolicy(
        actor=GaussianActor(3, 1, (32, 32), conditioned_std=False, tanh_mean=True),
        action_space=env.action_space,
        observation_space=env.observation_space,
        squash=False,
        normalize_obs=True,
    )
    return IQL(
        policy=policy,
        policy_optim=Adam(lr=1e-3),
        critics=CriticEnsemble(3, 1, (32, 32)),
        critic_optim=Adam(lr=1e-3),
        value=ValueFunction(3, (32, 32)),
        value_optim=Adam(lr=1e-3),
    )


def make_calql(env: gym.Env[Any, Any]) -> CQL:
    policy = GaussianPolicy(
        actor=GaussianActor(3, 1, (32, 32)),
        action_space=env.action_space,
        observation_space=env.observation_space,
    )
    return CQL(
        policy=policy,
        policy_optim=Adam(lr=1e-3),
        critics=CriticEnsemble(3, 1, (32, 32)),
        critic_optim=Adam(lr=1e-3),
        num_sampled_actions=2,
        calibrated=True,
    )


def make_awac(env: gym.Env[Any, Any]) -> AWAC:
    policy = GaussianPolicy(
        actor=GaussianActor(3, 1, (32, 32), conditioned_std=False),
        action_space=env.action_space,
        observation_space=env.observation_space,
        squash=False,
    )
    return AWAC(
        policy=policy,
        policy_optim=Adam(lr=1e-3),
        critics=CriticEnsemble(3, 1, (32, 32)),
        critic_optim=Adam(lr=1e-3),
    )


def make_ensemble(env: gym.Env[Any, Any], eta: float) -> SACN:
    policy = GaussianPolicy(
        actor=GaussianActor(3, 1, (32, 32)),
        action_space=env.action_space,
        observation_space=env.observation_space,
    )
    kw: dict[str, Any] = dict(
        policy=policy,
        policy_optim=Adam(lr=1e-3),
        critics=CriticEnsemble(3, 1, (32, 32), num_critics=4),
        critic_optim=Adam(lr=1e-3),
    )
    return EDAC(eta=eta, **kw) if eta > 0 else SACN(**kw)


@pytest.mark.parametrize(
    ("kind", "ratio"),
    [
        *[(k, r) for k in ("td3_bc", "calql", "iql") for r in (0.25, 0.5)],
        ("awac", 0.5),
        ("sac_n", 0.5),
        ("edac", 0.25),
    ],
)
def test_finetune_from_an_offline_checkpoint(
    kind: str, ratio: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    env = gym.make(TASK)
    makers: dict[str, Callable[[gym.Env[Any, Any]], OfflineAlgorithmBase[Any, Any]]] = {
        "td3_bc": make_td3bc,
        "calql": make_calql,
        "iql": make_iql,
        "awac": make_awac,
        "sac_n": lambda env: make_ensemble(env, 0.0),
        "edac": lambda env: make_ensemble(env, 1.0),
    }
    make = makers[kind]
    offline_buffer = offline_pendulum_buffer()
    pretrained = make(env)
    pretrained.run_training(
        OfflineTrainerParams(
            buffer=offline_buffer,
            max_epochs=1,
            epoch_num_steps=20,
            batch_size=32,
            show_progress=False,
            verbose=False,
        )
    )
    checkpoint = tmp_path / "last.pt"
    untyped: Any = pretrained
    torch.save(untyped.state_dict(), checkpoint)

    algo = make(env)
    untyped_algo: Any = algo
    untyped_algo.load_state_dict(torch.load(checkpoint, weights_only=True))
    assert algo.num_updates == 20
    finetune: OnlineFineTuning[Any, Any] = OnlineFineTuning(
        offline=algo,
        offline_buffer=offline_buffer,
        offline_ratio=ratio,
        exploration_noise=0.3 if kind == "td3_bc" else None,
    )
    shares: list[float] = []
    rewards: list[np.ndarray] = []
    sample = finetune.sample

    def recording_sample(buffer: ReplayBuffer, batch_size: int) -> Any:
        batch = sample(buffer, batch_size)
        rewards.append(batch.rew.numpy().copy())
        shares.append(float((batch.rew == MARK).float().mean()))
        return batch

    monkeypatch.setattr(finetune, "sample", recording_sample)
    online = ReplayBuffer(1000)
    train_envs = DummyVectorEnv([lambda: gym.make(TASK)])
    train_envs.seed(1)
    collector = Collector[CollectStats](finetune, train_envs, online, exploration_noise=True)
    finetune.run_training(
        OffPolicyTrainerParams(
            training_collector=collector,
            max_epochs=1,
            epoch_num_steps=40,
            collection_step_num_env_steps=10,
            update_step_num_gradient_steps_per_sample=1.0,
            batch_size=32,
            test_collector=None,
            show_progress=False,
            verbose=False,
        )
    )
    assert len(online) == 40  # the online buffer holds only what the collector gathered
    assert np.all(np.asarray(online.rew[:40]) <= 0.0)
    assert algo.num_updates == 20 + 40  # every online gradient step is the offline algorithm's
    assert len(shares) == 40
    assert shares == pytest.approx([round(ratio * 32) / 32] * 40)
    assert all(len(r) == 32 for r in rewards)
    act = np.asarray(online.act[:40])
    if kind not in ("iql", "awac"):  # the collector stores the policy's output: [-1, 1]
        # unless unsquashed
        assert np.all(np.abs(act) <= 1.0)
    # what is learned from is what the env executed: map_action's clip, in the policy's range
    learned = algo.online_transitions(online, np.arange(40)).act.numpy()
    np.testing.assert_allclose(learned, np.clip(act, -1.0, 1.0), atol=1e-5)
    if kind == "td3_bc":  # exploration noise: stored actions are not the actor's own
        with torch.no_grad(), policy_within_training_step(algo.policy, enabled=False):
            own = algo.policy(Batch(obs=np.asarray(online.obs[:40]), info={})).act.numpy()
        assert np.abs(act - own).mean() > 0.05


def make_rebrac(env: gym.Env[Any, Any]) -> ReBRAC:
    policy = DeterministicPolicy(
        actor=DeterministicActor(3, 1, (32, 32)),
        action_space=env.action_space,
        observation_space=env.observation_space,
    )
    return ReBRAC(
        policy=policy,
        policy_optim=Adam(lr=1e-3),
        critics=CriticEnsemble(3, 1, (32, 32), layer_norm=True),
        critic_optim=Adam(lr=1e-3),
        critic_bc_coef=0.5,
    )


def make_any(kind: str, env: gym.Env[Any, Any]) -> OfflineAlgorithmBase[Any, Any]:
    """Every continuous algorithm on Pendulum (small networks)."""
    makers: dict[str, Callable[[gym.Env[Any, Any]], OfflineAlgorithmBase[Any, Any]]] = {
        "td3_bc": make_td3bc,
        "calql": make_calql,
        "iql": make_iql,
        "rebrac": make_rebrac,
    }
    if kind in makers:
        return makers[kind](env)
    if kind in ("awac", "sacn", "edac", "lbsac"):
        return pendulum_algorithm(kind)
    return make_continuous(kind)


def env_units_dataset(
    algo: OfflineAlgorithmBase[Any, Any], online: ReplayBuffer, monkeypatch: pytest.MonkeyPatch
) -> TransitionDataset:
    """The algorithm's offline dataset of a copy of ``online`` whose actions are what the
    environment executed (``map_action``: clipped, in the environment's units) — what the
    same transitions look like in an offline file. The policy's normaliser is not refitted."""
    env_units = copy.deepcopy(online)
    n = len(online)
    env_units.act[:n] = algo.policy.map_action(np.asarray(online.act[:n]))
    with monkeypatch.context() as patch:
        patch.setattr(algo.policy.obs_normalizer, "fit", lambda obs: None)
        dataset = algo._build_dataset(env_units)
    assert isinstance(dataset, TransitionDataset)
    return dataset


def assert_same_transitions(ours: Transitions, expected: Transitions, what: str) -> None:
    assert type(ours) is type(expected), what
    for field in dataclasses.fields(expected):
        torch.testing.assert_close(
            getattr(ours, field.name),
            getattr(expected, field.name),
            rtol=1e-5,
            atol=1e-5,
            msg=f"{what}: {field.name}",
        )


FINETUNED = ["il", "bcq", "cql", "calql", "crr", "td3_bc", "iql", "rebrac", "awac", "sacn", "edac",
             "lbsac"]  # fmt: skip
"""Every continuous algorithm (BC, BCQ, CQL, Cal-QL, CRR, TD3+BC, IQL, ReBRAC, AWAC, SAC-N,
EDAC, LB-SAC)."""


@pytest.mark.parametrize("kind", FINETUNED)
def test_finetune_every_algorithm_sees_online_rows_in_offline_units(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few fine-tuning steps with Tianshou's ``Collector`` and ``OffPolicyTrainer``; every
    online row each algorithm learns from — every field, ReBRAC's next action and Cal-QL's
    return-to-go included — equals the row its offline dataset holds for the same transition
    stored in the environment's units. Stored actions outside ``[−1, 1]`` (another policy's
    noise) are clipped, as the environment's ``map_action`` did (policies that clip)."""
    torch.manual_seed(0)
    env = gym.make(TASK)
    algo = make_any(kind, env)
    deterministic = isinstance(algo.policy, DeterministicPolicy)
    finetune: OnlineFineTuning[Any, Any] = OnlineFineTuning(
        offline=algo,
        offline_buffer=offline_pendulum_buffer(200),
        offline_ratio=0.5,
        exploration_noise=0.5 if deterministic else None,
    )
    seen: list[tuple[ReplayBuffer, np.ndarray, Transitions]] = []
    learned: list[Transitions] = []
    online_transitions, update_on = algo.online_transitions, algo.update_on

    def spy_online(buffer: ReplayBuffer, indices: np.ndarray) -> Transitions:
        out = online_transitions(buffer, indices)
        seen.append((copy.deepcopy(buffer), np.asarray(indices).copy(), out))
        return out

    def spy_update(batch: Transitions, *, start: float | None = None) -> Any:
        learned.append(batch)
        return update_on(batch, start=start)

    monkeypatch.setattr(algo, "online_transitions", spy_online)
    monkeypatch.setattr(algo, "update_on", spy_update)
    online = ReplayBuffer(100)
    envs = DummyVectorEnv([lambda: gym.make(TASK)])
    envs.seed(1)
    finetune.run_training(
        OffPolicyTrainerParams(
            training_collector=Collector[CollectStats](
                finetune, envs, online, exploration_noise=True
            ),
            max_epochs=1,
            epoch_num_steps=12,
            collection_step_num_env_steps=4,
            update_step_num_gradient_steps_per_sample=0.5,
            batch_size=16,
            test_collector=None,
            show_progress=False,
            verbose=False,
        )
    )
    assert len(online) == 12 and len(learned) == len(seen) == 6
    for step, (batch, (then, rows, part)) in enumerate(zip(learned, seen, strict=True)):
        online_rows = type(batch)(
            **{f.name: getattr(batch, f.name)[8:] for f in dataclasses.fields(batch)}
        )
        assert_same_transitions(online_rows, part, f"step {step}: the batch's online rows")
        pos = torch.as_tensor(rows, dtype=torch.int64)
        expected = env_units_dataset(algo, then, monkeypatch).gather(pos)
        assert_same_transitions(part, expected, f"step {step}")

    if algo.policy.action_bound_method != "clip":
        return  # a tanh-squashed policy never stores actions beyond [−1, 1]
    # another policy's actions beyond the bounds: learned as the environment executed them
    act = np.asarray(online.act[:12]).copy()
    act[::3] = np.where(act[::3] >= 0, 1.6, -1.4)
    online.act[:12] = act
    rows = np.arange(12)
    ours = online_transitions(online, rows)
    beyond = env_units_dataset(algo, online, monkeypatch).gather(torch.arange(12))
    assert_same_transitions(ours, beyond, "stored actions beyond the bounds")
    assert ours.act.abs().max().item() <= 1.0


def test_finetune_split_and_parameters() -> None:
    env = gym.make(TASK)
    algo = make_td3bc(env)
    buf = offline_pendulum_buffer(50)
    ft = OnlineFineTuning(offline=algo, offline_buffer=buf, offline_ratio=0.25)
    assert ft.split(64, 0) == (64, 0)  # empty online buffer: all offline
    assert ft.split(64, 10) == (16, 48)
    assert OnlineFineTuning(offline=algo, offline_buffer=buf, offline_ratio=0.0).split(8, 1) == (
        0,
        8,
    )
    with pytest.raises(ValueError, match="offline_ratio"):
        OnlineFineTuning(offline=algo, offline_buffer=buf, offline_ratio=1.5)


# --------------------------------------------------------------------------- the examples


def write_pendulum_file(path: Path, episodes: int = 2) -> Path:
    from tianshou_offline import BufferWriter

    env = gym.make(TASK)
    rng = np.random.default_rng(0)
    with BufferWriter(
        path, observation_space=env.observation_space, action_space=env.action_space, env_id=TASK
    ) as writer:
        for e in range(episodes):
            obs, _ = env.reset(seed=e)
            rows: dict[str, list[Any]] = {k: [] for k in ("obs", "act", "rew", "obs_next")}
            done = False
            while not done:
                act = rng.uniform(-2.0, 2.0, size=(1,)).astype(np.float32)
                nxt, rew, term, trunc, _ = env.step(act)
                for k, v in zip(rows, (obs, act, rew, nxt), strict=True):
                    rows[k].append(v)
                obs, done = nxt, term or trunc
            n = len(rows["rew"])
            writer.add_episode(
                obs=np.asarray(rows["obs"]),
                act=np.asarray(rows["act"]),
                rew=np.asarray(rows["rew"]),
                obs_next=np.asarray(rows["obs_next"]),
                terminated=np.zeros(n, dtype=bool),
                truncated=np.arange(n) == n - 1,
            )
    return path


def _script(name: str) -> Any:
    return import_example(EXAMPLES / "mujoco", name)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["td3_bc", "cql", "iql", "awac", "sac_n", "edac", "lb_sac"])
def test_finetune_example_from_an_offline_example_checkpoint(
    algo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = write_pendulum_file(tmp_path / "pendulum.hdf5")
    # Pendulum in 20-step episodes: the tests and evaluations of both runs stay short
    common = ["--task", SHORT_TASK, "--expert-data-task", str(data), "--hidden-sizes", "16", "16",
              "--batch-size", "16", "--test-num", "1", "--logger", "none", "--logdir",
              str(tmp_path / "log"), "--show-progress", "0"]  # fmt: skip
    if algo == "cql":
        common += ["--calibrated", "1", "--num-sampled-actions", "2"]
    if algo in ("sac_n", "edac", "lb_sac"):
        common += ["--num-critics", "3"]
    offline = _script(f"d4rl_{algo}").main([*common, "--epoch", "1", "--step-per-epoch", "10"])
    last = Path(offline["log_path"]) / "last.pt"
    result = _script(f"finetune_{algo}").main(
        [*common, "--resume-path", str(last), "--online-steps", "30", "--step-per-epoch", "30"]
    )
    assert result["offline_gradient_steps"] == 10  # the offline checkpoint's step count
    assert result["online_env_steps"] == 30
    assert result["gradient_steps"] == 10 + 30
    assert (Path(result["log_path"]) / "last.pt").is_file()
    assert (Path(result["log_path"]) / "policy.pt").is_file()


def test_finetune_flags_take_tianshou_update_per_step_name() -> None:
    """``--updates-per-step`` is the fine-tuning examples' flag; Tianshou's examples' name
    ``--update-per-step`` (either spelling) sets the same setting."""
    script = _script("finetune_td3_bc")
    base = ["--task", "Pendulum-v1"]
    assert script.get_args(base).updates_per_step == 1.0
    for flag in ("--updates-per-step", "--update-per-step", "--update_per_step"):
        assert script.get_args([*base, flag, "0.25"]).updates_per_step == 0.25

"""ReBRAC: reference tests and a learning test.

Reference tests (helpers in ``tests/helpers/reference.py``): one update on a fixed mini-batch
with plain-SGD optimizers equals an independent computation of the paper's equations, written
out here — ReBRAC (Tarasov et al. 2023, arXiv:2305.09836): the actor's and the critic's BC
penalties, LayerNorm critics, the policy delay.

The learning test trains at a tiny budget on the Pendulum-v1 expert data the other continuous
tests use (``benchmarks/_lib/experts/pendulum.py``) and requires the final policy, evaluated
afresh over 20 episodes, to reach a mean return of −400 (a random or zero-torque policy scores
about −1280).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tianshou.algorithm.optim import AdamOptimizerFactory as Adam
from tianshou.data import ReplayBuffer

from tests.helpers.pendulum import PENDULUM_ACT, PENDULUM_OBS, THRESHOLD, train_and_evaluate
from tests.helpers.reference import (
    ACT_SPACE,
    OBS_SPACE,
    SGD,
    A,
    B,
    D,
    H,
    assert_binds,
    assert_same,
    displace_targets,
    fixed_batch,
    moved,
    one_update,
    params,
    polyak,
    saturate,
    sgd_step,
)
from tianshou_offline.algorithms import (
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    NextActionDataset,
    NextActionTransitions,
    ReBRAC,
    ReBRACStep,
    ReBRACTrainingStats,
)


def rebrac_batch(seed: int = 0) -> NextActionTransitions:
    """The fixed batch with next dataset actions; rows 2 and 5 terminate and row 7 is a
    truncation: none of the three has a next action."""
    b = fixed_batch(seed)
    g = torch.Generator().manual_seed(100 + seed)
    known = torch.ones(B)
    known[[2, 5, 7]] = 0.0
    act_next = (torch.rand(B, A, generator=g) * 1.8 - 0.9) * known.unsqueeze(1)
    return NextActionTransitions(
        obs=b.obs,
        act=b.act,
        rew=b.rew,
        obs_next=b.obs_next,
        discount=b.discount,
        terminated=b.terminated,
        act_next=act_next,
        next_known=known,
    )


def _rebrac(**overrides: Any) -> ReBRAC:
    policy = DeterministicPolicy(
        actor=DeterministicActor(D, A, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
    )
    kw: dict[str, Any] = dict(
        actor_bc_coef=0.3, critic_bc_coef=0.7, tau=0.05, policy_noise=0.6, noise_clip=0.5
    )
    kw.update(overrides)
    return ReBRAC(
        policy=policy,
        policy_optim=SGD,
        critics=CriticEnsemble(D, A, H, layer_norm=True),
        critic_optim=SGD,
        **kw,
    )


@pytest.mark.parametrize("normalize_q", [True, False])
def test_rebrac_matches_the_paper(normalize_q: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 0: the critic towards ``r + γ(1−d)[min_j Q'_j(s', ã') − β₂‖ã' − a'‖²]`` (no
    penalty where a' is unknown), ``ã' = clip(π'(s') + clip(σε, −c, c), −1, 1)``; then the
    actor on ``mean(β₁‖π(s) − a‖² − λ min_j Q_j(s, π(s)))`` with ``λ = 1/mean|min_j Q_j|``
    (not differentiated; 1 without normalize_q) using the updated critic; Polyak targets.
    Step 1: critic only (policy delay 2)."""
    torch.manual_seed(0)
    beta1, beta2, tau = 0.3, 0.7, 0.05
    algo = _rebrac(normalize_q=normalize_q)
    displace_targets(algo)
    saturate(algo.actor_target)
    policy = algo.policy
    actor, critics = copy.deepcopy(policy.actor), copy.deepcopy(algo.critics)
    actor_t, critics_t = copy.deepcopy(algo.actor_target), copy.deepcopy(algo.critics_target)
    b = rebrac_batch()
    stats = one_update(algo, b, seed=61, monkeypatch=monkeypatch)

    torch.manual_seed(61)
    eps = torch.randn(B, A)
    with torch.no_grad():
        smoothing = (0.6 * eps).clamp(-0.5, 0.5)
        assert_binds(0.6 * eps, smoothing, "the noise clip")
        smoothed = actor_t(b.obs_next) + smoothing
        a_tilde = smoothed.clamp(-1.0, 1.0)
        assert_binds(smoothed, a_tilde, "the action clip")
        penalty = torch.where(
            b.next_known > 0, ((a_tilde - b.act_next) ** 2).sum(-1), torch.zeros(B)
        )
        q_next = torch.minimum(*critics_t(b.obs_next, a_tilde))
        y = b.rew + b.discount * (q_next - beta2 * penalty)
    q = critics(b.obs, b.act)
    critic_loss = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
    sgd_step(params(critics), critic_loss)
    pi = actor(b.obs)
    q_pi = torch.minimum(*critics(b.obs, pi))
    lmbda = 1.0 / q_pi.abs().mean().detach() if normalize_q else torch.tensor(1.0)
    actor_bc = ((pi - b.act) ** 2).sum(-1)
    actor_loss = (beta1 * actor_bc - lmbda * q_pi).mean()
    critics.zero_grad()
    sgd_step(params(actor), actor_loss)
    polyak(critics_t, critics, tau)
    polyak(actor_t, actor, tau)

    assert stats.critic_loss == pytest.approx(critic_loss.item(), rel=1e-5)
    assert stats.actor_loss == pytest.approx(actor_loss.item(), rel=1e-5)
    assert stats.actor_bc == pytest.approx(actor_bc.mean().item(), rel=1e-5)
    assert stats.lmbda == pytest.approx(lmbda.item(), rel=1e-5)
    assert stats.critic_bc == pytest.approx((penalty.sum() / 5).item(), rel=1e-5)
    assert stats.q_target == pytest.approx(y.mean().item(), rel=1e-5)
    for ours, ref, what in [
        (policy.actor, actor, "actor"),
        (algo.critics, critics, "critics"),
        (algo.actor_target, actor_t, "actor_target"),
        (algo.critics_target, critics_t, "critics_target"),
    ]:
        assert_same(ours, ref, what)

    # step 1: the critic moves, the actor and the targets wait for step 2
    actor_before, targets_before = copy.deepcopy(policy.actor), copy.deepcopy(algo.critics_target)
    critics_before = copy.deepcopy(algo.critics)
    one_update(algo, rebrac_batch(1), seed=62, monkeypatch=monkeypatch)
    assert moved(algo.critics, critics_before)
    assert not moved(policy.actor, actor_before)
    assert not moved(algo.critics_target, targets_before)


def test_layer_norm_critic_matches_per_member_networks() -> None:
    """``CriticEnsemble(layer_norm=True)``: each member is Linear → ReLU → LayerNorm (with
    its own scale and shift) per hidden layer, then a linear output — ReBRAC's critic."""
    torch.manual_seed(0)
    critics = CriticEnsemble(D, A, H, num_critics=2, layer_norm=True)
    with torch.no_grad():  # move the LayerNorm parameters away from their identity start
        for p in [*critics.norm_weights, *critics.norm_biases]:
            p.add_(torch.randn_like(p) * 0.3)
    obs, act = torch.randn(B, D), torch.rand(B, A) * 2 - 1
    q = critics(obs, act)
    for e in range(2):
        x = torch.cat([obs, act], dim=-1)
        for layer in range(len(H)):
            x = torch.relu(x @ critics.weights[layer][e] + critics.biases[layer][e])
            x = F.layer_norm(
                x, (H[layer],), critics.norm_weights[layer][e, 0], critics.norm_biases[layer][e, 0]
            )
        expected = (x @ critics.weights[-1][e] + critics.biases[-1][e]).squeeze(-1)
        torch.testing.assert_close(q[e], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(critics(obs, act, member=1), q[1])
    many = critics(obs, act.unsqueeze(1).expand(B, 3, A))  # broadcast path
    torch.testing.assert_close(many[:, :, 1], q, rtol=1e-5, atol=1e-6)


def test_rebrac_next_actions_follow_the_episodes() -> None:
    """The dataset's ``a'`` is the next row's action inside an episode (n = 1) or the action
    n steps ahead (n = 3); rows whose window ends the episode have none."""
    from tests.helpers.continuous import ACT_SPACE as PEND_ACT
    from tests.helpers.continuous import OBS_SPACE as PEND_OBS
    from tests.helpers.continuous import synthetic_buffer

    buf = synthetic_buffer(n=100, episode=10, terminate_every=2)
    policy = DeterministicPolicy(
        actor=DeterministicActor(3, 1, H), action_space=PEND_ACT, observation_space=PEND_OBS
    )
    act = np.asarray(buf.act, dtype=np.float32).reshape(-1) / 2.0  # [-2, 2] -> [-1, 1]
    for n in (1, 3):
        data = NextActionDataset.with_next_actions(buf, policy=policy, gamma=0.9, n_step=n)
        batch = data.gather(torch.arange(len(data)))
        known = batch.next_known.numpy()
        for i in range(100):
            t = i % 10
            if t + n <= 9:
                assert known[i] == 1.0, (n, i)
                assert batch.act_next[i, 0].item() == pytest.approx(act[i + n], abs=1e-6)
            else:
                assert known[i] == 0.0 and batch.act_next[i, 0].item() == 0.0, (n, i)
        assert data.nbytes > data.packed.element_size() * data.packed.numel()


def test_rebrac_rejects_a_batch_without_next_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    algo = _rebrac()
    with pytest.raises(ValueError, match="next dataset actions"):
        one_update(algo, fixed_batch(), seed=0, monkeypatch=monkeypatch)


@dataclass(kw_only=True)
class _PenaltyStats(ReBRACTrainingStats):
    critic_bc_max: float = 0.0


class _PenaltyReBRAC(ReBRAC[_PenaltyStats]):
    def _extend_stats(self, stats: _PenaltyStats, step: ReBRACStep) -> None:
        stats.critic_bc_max = float(step.critic_bc.max().item())


def test_rebrac_generic_stats_subclass(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    algo = _PenaltyReBRAC(
        policy=DeterministicPolicy(
            actor=DeterministicActor(D, A, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
        ),
        policy_optim=SGD,
        critics=CriticEnsemble(D, A, H, layer_norm=True),
        critic_optim=SGD,
    )
    stats = one_update(algo, rebrac_batch(), seed=1, monkeypatch=monkeypatch)
    assert type(stats) is _PenaltyStats and stats.critic_bc_max > 0.0


@pytest.mark.slow
def test_rebrac_learns_pendulum_from_expert_data(expert_buffer: ReplayBuffer) -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    hidden = (64, 64)
    algo = ReBRAC(
        policy=DeterministicPolicy(
            actor=DeterministicActor(3, 1, hidden),
            action_space=PENDULUM_ACT,
            observation_space=PENDULUM_OBS,
            normalize_obs=True,
        ),
        policy_optim=Adam(lr=1e-3),
        critics=CriticEnsemble(3, 1, hidden, layer_norm=True),
        critic_optim=Adam(lr=1e-3),
        # β₁ = 0.4 is TD3+BC's BC weight relative to the normalised Q (1/α, α = 2.5): expert
        # data wants strong cloning; at this budget β₁ = 0.1 scored −915, 0.4 −168, 1.0 −162
        actor_bc_coef=0.4,
        critic_bc_coef=0.01,
    )
    final = train_and_evaluate(algo, expert_buffer)
    print(f"ReBRAC: final mean return {final:.1f}")
    assert final >= THRESHOLD, f"ReBRAC: final mean return {final:.1f} < {THRESHOLD}"


def test_rebrac_tianshou_batch_path_matches_the_dataset() -> None:
    """Tianshou's own path (``_preprocess_batch`` then ``_as_transitions``) gives the same
    next actions, n-step targets and masks as the device-resident dataset, for n = 1 and 3."""
    from tests.helpers.continuous import ACT_SPACE as PEND_ACT
    from tests.helpers.continuous import OBS_SPACE as PEND_OBS
    from tests.helpers.continuous import synthetic_buffer

    buf = synthetic_buffer(n=100, episode=10, terminate_every=2)
    rows = np.arange(100)
    for n in (1, 3):
        algo = ReBRAC(
            policy=DeterministicPolicy(
                actor=DeterministicActor(3, 1, H), action_space=PEND_ACT, observation_space=PEND_OBS
            ),
            policy_optim=SGD,
            critics=CriticEnsemble(3, 1, H, layer_norm=True),
            critic_optim=SGD,
            gamma=0.9,
            n_step_return_horizon=n,
        )
        data = algo.dataset_for(buf).gather(torch.arange(100))
        assert isinstance(data, NextActionTransitions)
        numpy_path = algo._as_transitions(algo._preprocess_batch(buf[rows], buf, rows))
        for field in ("act", "rew", "obs_next", "discount", "act_next", "next_known"):
            torch.testing.assert_close(
                getattr(numpy_path, field), getattr(data, field), msg=f"n={n} {field}"
            )

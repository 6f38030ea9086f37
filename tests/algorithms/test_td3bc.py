"""TD3+BC: one update on a fixed mini-batch equals an independent computation of the paper's
equations (Fujimoto & Gu 2021, arXiv:2106.06860, Eqs. 3–4, on TD3: Fujimoto et al. 2018,
arXiv:1802.09477), written out here.

How every reference test works (helpers in ``tests/helpers/reference.py``): the algorithm's
optimizers are plain SGD (learning rate ``LR``); the test copies its networks, draws the same
random numbers the update draws (same seed, same shapes, in the update's order), computes the
losses from the paper with those copies — networks are only *evaluated* through their
modules; every loss, target, sample, log-density, weight and multiplier is computed here —
takes the SGD steps by hand, and compares every parameter (and the reported statistics) with
the algorithm's. A loss with a wrong sign, a missing factor, a missing ``detach`` or a step in
the wrong order changes the parameters by about ``LR`` × the gradient, far above the
tolerance. ``tests/algorithms/test_mutations.py`` checks that one-line mutations of the
updates make these tests fail.
"""

from __future__ import annotations

import copy

import pytest
import torch

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
    TD3BC,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
)


def test_td3bc_matches_the_paper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 0: TD3's clipped double-Q critic step with target-policy smoothing, then the
    actor step on ``λ Q_1(s, π(s)) − (π(s) − a)²`` with ``λ = α / mean|Q_1(s, π(s))|``
    (not differentiated) and Polyak targets. Step 1: critic only (policy delay 2): the actor
    and the targets do not move."""
    torch.manual_seed(0)
    policy = DeterministicPolicy(
        actor=DeterministicActor(D, A, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
    )
    algo = TD3BC(
        policy=policy,
        policy_optim=SGD,
        critics=CriticEnsemble(D, A, H),
        critic_optim=SGD,
        tau=0.05,
        policy_noise=0.6,
        noise_clip=0.5,
        update_actor_freq=2,
        alpha=2.5,
    )
    displace_targets(algo)
    saturate(algo.actor_target)
    actor, critics = copy.deepcopy(policy.actor), copy.deepcopy(algo.critics)
    actor_t, critics_t = copy.deepcopy(algo.actor_target), copy.deepcopy(algo.critics_target)
    b = fixed_batch()
    stats = one_update(algo, b, seed=11, monkeypatch=monkeypatch)

    torch.manual_seed(11)
    eps = torch.randn(B, A)
    with torch.no_grad():
        smoothing = (0.6 * eps).clamp(-0.5, 0.5)
        assert_binds(0.6 * eps, smoothing, "the noise clip")
        smoothed = actor_t(b.obs_next) + smoothing
        act_next = smoothed.clamp(-1.0, 1.0)
        assert_binds(smoothed, act_next, "the action clip")
        y = b.rew + b.discount * torch.minimum(*critics_t(b.obs_next, act_next))
    q = critics(b.obs, b.act)
    critic_loss = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
    sgd_step(params(critics), critic_loss)
    pi = actor(b.obs)
    q1 = critics(b.obs, pi)[0]
    lmbda = 2.5 / q1.abs().mean().detach()
    bc = ((pi - b.act) ** 2).mean()
    actor_loss = -lmbda * q1.mean() + bc
    critics.zero_grad()
    sgd_step(params(actor), actor_loss)
    polyak(critics_t, critics, 0.05)
    polyak(actor_t, actor, 0.05)

    assert stats.critic_loss == pytest.approx(critic_loss.item(), rel=1e-5)
    assert stats.actor_loss == pytest.approx(actor_loss.item(), rel=1e-5)
    assert stats.lmbda == pytest.approx(lmbda.item(), rel=1e-5)
    assert stats.bc_loss == pytest.approx(bc.item(), rel=1e-5)
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
    one_update(algo, fixed_batch(1), seed=12, monkeypatch=monkeypatch)
    assert moved(algo.critics, critics_before)
    assert not moved(policy.actor, actor_before)
    assert not moved(algo.critics_target, targets_before)
    one_update(algo, fixed_batch(2), seed=13, monkeypatch=monkeypatch)
    assert moved(policy.actor, actor_before) and moved(algo.critics_target, targets_before)

"""AWAC: a reference test and its advantage weights.

The reference test (helpers in ``tests/helpers/reference.py``): one update on a fixed
mini-batch with plain-SGD optimizers equals an independent computation of the paper's
equations written out here, with target critics that differ from the online ones (they are
perturbed before the step) — AWAC (Nair et al. 2020, arXiv:2006.09359, Sec. 4): TD towards
min_j Q'_j(s', a'), a' ~ π(·|s'), then −E[w log π(a|s)] with
w = min(exp((min_j Q_j(s, a) − V(s)) / λ), w_max) (clip binding for part of the batch), V(s)
the mean over K actor samples; and d3rlpy's batch-softmax weights. AWAC's learning test is
the ensembles' (``tests/algorithms/test_ensembles.py``, the same Pendulum-v1 budget).
"""

from __future__ import annotations

import copy
import math
from typing import Any

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
    assert_same,
    fixed_batch,
    member_q,
    min_over_members,
    normal_log_density,
    one_update,
    params,
    perturb,
    polyak,
    sgd_step,
)
from tianshou_offline.algorithms import (
    AWAC,
    CriticEnsemble,
    GaussianActor,
    GaussianPolicy,
    advantage_weights,
)

K = 3


def _awac(**kw: Any) -> AWAC:
    torch.manual_seed(0)
    policy = GaussianPolicy(
        actor=GaussianActor(D, A, H),
        action_space=ACT_SPACE,
        observation_space=OBS_SPACE,
        squash=False,
    )
    args: dict[str, Any] = dict(lam=0.01, max_weight=1.5, num_sampled_actions=K, tau=0.05)
    args.update(kw)
    algo = AWAC(
        policy=policy,
        policy_optim=SGD,
        critics=CriticEnsemble(D, A, H, num_critics=3),
        critic_optim=SGD,
        **args,
    )
    perturb(algo.critics_target)
    return algo


@pytest.mark.parametrize("normalize", [False, True], ids=["clipped_exp", "batch_softmax"])
def test_awac_matches_the_paper(normalize: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Critic: ``Σ_j E[(Q_j(s, a) − r − γ(1−d) min_j Q'_j(s', a'))²]``, ``a' ~ π(·|s')``
    (clipped to [−1, 1]); then with the updated critics the actor on ``−E[w log π(a|s)]``,
    ``w = min(exp((min_j Q_j(s, a) − V(s)) / λ), w_max)`` (or ``B softmax(A/λ)``),
    ``V(s) = 1/K Σ_k min_j Q_j(s, a_k)``; Polyak target critics."""
    lam, w_max, tau = 0.01, 1.5, 0.05
    algo = _awac(normalize_weights=normalize)
    actor, critics = copy.deepcopy(algo.policy.actor), copy.deepcopy(algo.critics)
    critics_t = copy.deepcopy(algo.critics_target)
    b = fixed_batch()
    stats = one_update(algo, b, seed=41, monkeypatch=monkeypatch)

    torch.manual_seed(41)
    eps_next, eps_k = torch.randn(B, A), torch.randn(B, K, A)
    with torch.no_grad():
        mean_n, log_std_n = actor(b.obs_next)
        a_next = (mean_n + log_std_n.exp() * eps_next).clamp(-1.0, 1.0)
        q_next = min_over_members([member_q(critics_t, j, b.obs_next, a_next) for j in range(3)])
        y = b.rew + b.discount * q_next
    critic_loss = sum(((member_q(critics, j, b.obs, b.act) - y) ** 2).mean() for j in range(3))
    assert isinstance(critic_loss, torch.Tensor)
    sgd_step(params(critics), critic_loss)
    mean, log_std = actor(b.obs)
    with torch.no_grad():
        a_k = (mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * eps_k).clamp(-1.0, 1.0)
        v = torch.stack(
            [
                min_over_members([member_q(critics, j, b.obs, a_k[:, k]) for j in range(3)])
                for k in range(K)
            ]
        ).mean(0)
        q = min_over_members([member_q(critics, j, b.obs, b.act) for j in range(3)])
        adv = q - v
        if normalize:
            w = B * torch.exp(adv / lam) / torch.exp(adv / lam).sum()
        else:
            w = torch.minimum(torch.exp(adv / lam), torch.tensor(w_max))
    actor_loss = -(w * normal_log_density(b.act, mean, log_std.exp())).mean()
    sgd_step(params(actor), actor_loss)
    polyak(critics_t, critics, tau)

    if not normalize:
        assert 0.0 < stats.clipped_weight < 1.0  # the clip binds for part of the batch
    assert stats.critic_loss == pytest.approx(critic_loss.item(), rel=1e-5)
    assert stats.actor_loss == pytest.approx(actor_loss.item(), rel=1e-5)
    assert stats.advantage == pytest.approx(adv.mean().item(), rel=1e-5, abs=1e-6)
    assert stats.weight == pytest.approx(w.mean().item(), rel=1e-5)
    assert stats.q_target == pytest.approx(y.mean().item(), rel=1e-5)
    assert_same(algo.critics, critics, "critics")
    assert_same(algo.policy.actor, actor, "actor")
    assert_same(algo.critics_target, critics_t, "critics_target")


def test_advantage_weights() -> None:
    adv = torch.tensor([-1.0, 0.0, 2.0])
    torch.testing.assert_close(
        advantage_weights(adv, 2.0, max_weight=2.0, normalize=False),
        torch.tensor([math.exp(-0.5), 1.0, 2.0]),
    )
    soft = advantage_weights(adv, 2.0, max_weight=2.0, normalize=True)
    assert soft.sum().item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="lam"):
        _awac(lam=0.0)

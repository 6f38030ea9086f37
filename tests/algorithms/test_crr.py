"""CRR, continuous and discrete: one update on a fixed mini-batch equals an independent
computation of the paper's equations, written out here (the method: ``tests/algorithms/test_td3bc.py``'s
docstring; helpers in ``tests/helpers/reference.py``).

Paper: CRR — Wang et al. 2020 (arXiv:2006.15134), Sec. 3.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.helpers.reference import (
    ACT_SPACE,
    DISCRETE,
    NUM_ACTIONS,
    OBS_SPACE,
    SGD,
    A,
    B,
    D,
    H,
    assert_binds,
    assert_same,
    discrete_batch,
    displace_targets,
    fixed_batch,
    normal_log_density,
    one_update,
    params,
    polyak,
    sgd_step,
)
from tianshou_offline.algorithms import (
    CRR,
    CriticEnsemble,
    DiscreteActorPolicy,
    DiscreteCRR,
    DualHeadNet,
    GaussianActor,
    GaussianPolicy,
    MLPTrunk,
)


@pytest.mark.parametrize(
    ("weight", "advantage"), [("exp", "mean"), ("binary", "mean"), ("exp", "max")]
)
def test_crr_matches_the_paper(
    weight: str, advantage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Critic: TD towards ``r + γ(1−d) min_j Q'_j(s', a')``, ``a' ~ π'(·|s')`` (clipped).
    Advantage ``Â = Q(s, a) − mean_k Q(s, a_k)`` (or ``max_k``), ``a_k ~ π(·|s)``; weights
    ``f = min(exp(Â/β), 20)`` or ``1[Â > 0]``; actor ``−E[f · log π(a|s)]``. Both losses from
    the same parameters, one step each; Polyak targets."""
    torch.manual_seed(0)
    policy = GaussianPolicy(
        actor=GaussianActor(D, A, H),
        action_space=ACT_SPACE,
        observation_space=OBS_SPACE,
        squash=False,
    )
    m, beta, tau = 4, 0.5, 0.05
    algo = CRR(
        policy=policy,
        policy_optim=SGD,
        critics=CriticEnsemble(D, A, H),
        critic_optim=SGD,
        tau=tau,
        weight="binary" if weight == "binary" else "exp",
        beta=beta,
        max_weight=20.0,
        advantage="max" if advantage == "max" else "mean",
        num_sampled_actions=m,
    )
    displace_targets(algo)
    actor, critics = copy.deepcopy(policy.actor), copy.deepcopy(algo.critics)
    actor_t, critics_t = copy.deepcopy(algo.actor_target), copy.deepcopy(algo.critics_target)
    b = fixed_batch()
    stats = one_update(algo, b, seed=41, monkeypatch=monkeypatch)

    torch.manual_seed(41)
    eps_next, eps_k = torch.randn(B, A), torch.randn(B, m, A)
    with torch.no_grad():
        mean_t, log_std_t = actor_t(b.obs_next)
        sampled = mean_t + log_std_t.exp() * eps_next
        act_next = sampled.clamp(-1, 1)
        assert_binds(sampled, act_next, "the clip of the target policy's samples")
        y = b.rew + b.discount * critics_t(b.obs_next, act_next).min(0).values
    q = critics(b.obs, b.act)
    critic_loss = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
    mean, log_std = actor(b.obs)
    with torch.no_grad():
        samples = (mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * eps_k).clamp(-1, 1)
        q_k = critics(b.obs, samples).min(0).values  # (B, m)
        baseline = q_k.mean(1) if advantage == "mean" else q_k.max(1).values
        adv = q.detach().min(0).values - baseline
        f = (adv > 0).float() if weight == "binary" else torch.exp(adv / beta).clamp(max=20.0)
    actor_loss = -(f * normal_log_density(b.act, mean, log_std.exp())).mean()
    sgd_step(params(critics), critic_loss)
    sgd_step(params(actor), actor_loss)
    polyak(critics_t, critics, tau)
    polyak(actor_t, actor, tau)

    assert stats.critic_loss == pytest.approx(critic_loss.item(), rel=1e-5)
    assert stats.actor_loss == pytest.approx(actor_loss.item(), rel=1e-5, abs=1e-7)
    assert stats.advantage == pytest.approx(adv.mean().item(), rel=1e-5, abs=1e-7)
    assert stats.weight == pytest.approx(f.mean().item(), rel=1e-5)
    if weight == "binary":
        assert 0.0 < stats.weight < 1.0  # the fixed batch has both signs
    for ours, ref, what in [
        (policy.actor, actor, "actor"),
        (algo.critics, critics, "critics"),
        (algo.actor_target, actor_t, "actor_target"),
        (algo.critics_target, critics_t, "critics_target"),
    ]:
        assert_same(ours, ref, what)


@pytest.mark.parametrize(
    ("mode", "advantage", "target_update_freq", "min_q_weight"),
    [("exp", "mean", 0, 0.0), ("binary", "max", 2, 1.5), ("all", "mean", 0, 1.5)],
)
def test_discrete_crr_matches_the_paper(
    mode: str,
    advantage: str,
    target_update_freq: int,
    min_q_weight: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Critic ``½ E(Q(s, a) − y)²``, ``y = r + γ(1−d) Σ_a π'(a|s') Q'(s', a)``; advantage
    ``Q(s, a) − Σ_a' π(a'|s) Q(s, a')`` (or ``− max_a' Q``), a weight without gradient;
    actor ``−E[f(Â) log π(a|s)]`` with ``f = min(exp(Â/β), 20)``, ``1[Â > 0]`` or 1; the CQL(H)
    regulariser ``w · E[log Σ exp Q − Q(s, a_D)]``; one SGD step on the sum."""
    torch.manual_seed(0)
    net = DualHeadNet(MLPTrunk(4, [16]), NUM_ACTIONS, [16])
    beta = 0.7
    algo = DiscreteCRR(
        policy=DiscreteActorPolicy(actor=net, action_space=DISCRETE, logits_index=0),
        optim=SGD,
        policy_improvement_mode="exp" if mode == "exp" else "binary" if mode == "binary" else "all",
        ratio_upper_bound=20.0,
        beta=beta,
        advantage="max" if advantage == "max" else "mean",
        min_q_weight=min_q_weight,
        target_update_freq=target_update_freq,
    )
    for step in range(2):
        ref = copy.deepcopy(net)
        bootstrap: nn.Module = ref  # no target network: the online one, without gradient
        if algo.net_target is not None:
            displace_targets(algo, seed=80 + step)  # step 0 copies the network over it
            bootstrap = copy.deepcopy(net if step == 0 else algo.net_target)
        b = discrete_batch(step)
        stats = one_update(algo, b, seed=61, monkeypatch=monkeypatch)

        rows = torch.arange(B)
        with torch.no_grad():
            logits_next, q_next = bootstrap(b.obs_next)
            y = b.rew + b.discount * (torch.softmax(logits_next, 1) * q_next).sum(1)
        logits, q = ref(b.obs)
        critic_loss = 0.5 * ((q[rows, b.act] - y) ** 2).mean()
        log_pi = torch.log_softmax(logits, 1)
        with torch.no_grad():
            q_d = q.detach()
            baseline = (log_pi.exp() * q_d).sum(1) if advantage == "mean" else q_d.max(1).values
            adv = q_d[rows, b.act] - baseline
            if mode == "exp":
                f = torch.exp(adv / beta).clamp(max=20.0)
            elif mode == "binary":
                f = (adv > 0).float()
            else:
                f = torch.ones(B)
        actor_loss = -(f * log_pi[rows, b.act]).mean()
        cql = (torch.logsumexp(q, 1) - q[rows, b.act]).mean()
        loss = critic_loss + actor_loss + min_q_weight * cql
        sgd_step(params(ref), loss)

        assert stats.critic_loss == pytest.approx(critic_loss.item(), rel=1e-5)
        assert stats.actor_loss == pytest.approx(actor_loss.item(), rel=1e-5)
        assert stats.advantage == pytest.approx(adv.mean().item(), rel=1e-5, abs=1e-7)
        assert stats.weight == pytest.approx(f.mean().item(), rel=1e-5)
        assert stats.loss == pytest.approx(loss.item(), rel=1e-5)
        assert_same(net, ref, f"step {step}: net")
        if algo.net_target is not None:
            assert_same(algo.net_target, bootstrap, f"step {step}: target")

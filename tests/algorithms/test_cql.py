"""CQL, continuous and discrete: one update on a fixed mini-batch equals an independent
computation of the paper's equations, written out here (the method: ``tests/algorithms/test_td3bc.py``'s
docstring; helpers in ``tests/helpers/reference.py``).

Papers: CQL — Kumar et al. 2020 (arXiv:2006.04779), Eq. 4 and Appendix F, with SAC
(Haarnoja et al. 2018, arXiv:1812.05905); discrete CQL — CQL(H) on QR-DQN (Dabney et al. 2018,
arXiv:1710.10044, Eqs. 9–10).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.helpers.reference import (
    ACT_SPACE,
    DISCRETE,
    NUM_ACTIONS,
    NUM_QUANTILES,
    OBS_SPACE,
    SGD,
    A,
    B,
    D,
    H,
    assert_same,
    discrete_batch,
    displace_targets,
    fixed_batch,
    one_update,
    params,
    polyak,
    quantile_huber,
    sgd_step,
    tanh_gaussian,
)
from tianshou_offline.algorithms import (
    CQL,
    CriticEnsemble,
    DiscreteCQL,
    GaussianActor,
    GaussianPolicy,
    MLPTrunk,
    QuantileQNet,
    QValuePolicy,
)


def _cql(with_lagrange: bool, threshold: float, backup_entropy: bool, form: str = "cql") -> CQL:
    torch.manual_seed(0)
    return CQL(
        policy=GaussianPolicy(
            actor=GaussianActor(D, A, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
        ),
        policy_optim=SGD,
        critics=CriticEnsemble(D, A, H),
        critic_optim=SGD,
        tau=0.05,
        alpha="auto",
        alpha_optim=SGD,
        init_alpha=0.5,
        cql_weight=5.0,
        temperature=1.0,
        num_sampled_actions=3,
        with_lagrange=with_lagrange,
        lagrange_threshold=threshold,
        lagrange_form="calql" if form == "calql" else "cql",
        cql_alpha_optim=SGD,
        backup_entropy=backup_entropy,
    )


@pytest.mark.parametrize(
    ("with_lagrange", "threshold", "backup_entropy", "form"),
    [
        (False, 0.0, False, "cql"),
        (True, -50.0, False, "cql"),
        (True, 50.0, True, "cql"),
        (True, 6.0, False, "cql"),
        (True, 6.0, False, "calql"),
    ],
    ids=[
        "cql_h",
        "lagrange_gap_above_tau",
        "lagrange_gap_below_tau_soft_backup",
        "lagrange_w_gap_above_tau",
        "calql_form_gap_below_tau",
    ],
)
def test_cql_matches_the_paper(
    with_lagrange: bool,
    threshold: float,
    backup_entropy: bool,
    form: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CQL(H) (Eq. 4) with the importance-sampled log-sum-exp of Appendix F (N uniform
    actions with density 2^−A, N from π(·|s) and N from π(·|s'), each Q corrected by its
    log-density), the SAC backup, actor and temperature losses, one step from the same
    parameters. Lagrange (Appendix F): ``α'`` follows gradient *ascent* on
    ``α' (w·gap − τ)``: it grows when ``w·gap`` exceeds τ and shrinks below it; in the
    Cal-QL/CORL form ``α'·w·(gap − τ)`` when ``gap`` exceeds τ. With τ = 6 (the gap is about
    3.6: ``gap < τ < w·gap``) the two forms move α' in opposite directions."""
    algo = _cql(with_lagrange, threshold, backup_entropy, form)
    displace_targets(algo)
    n, w = 3, 5.0
    actor, critics = copy.deepcopy(algo.policy.actor), copy.deepcopy(algo.critics)
    critics_t = copy.deepcopy(algo.critics_target)
    log_alpha = algo.log_alpha.detach().clone().requires_grad_()
    log_alpha_prime = algo.log_cql_alpha.detach().clone().requires_grad_()
    b = fixed_batch()
    stats = one_update(algo, b, seed=21, monkeypatch=monkeypatch)

    def excess(gap: torch.Tensor) -> torch.Tensor:
        """Kumar et al.'s ``w·gap − τ``, or Cal-QL's/CORL's ``w·(gap − τ)``."""
        return w * (gap - threshold) if form == "calql" else w * gap - threshold

    torch.manual_seed(21)
    eps_s, eps_next, uniform = (
        torch.randn(B, n + 1, A),
        torch.randn(B, n + 1, A),
        torch.rand(B, n, A),
    )
    alpha = log_alpha.detach().exp()
    mean, log_std = actor(b.obs)
    mean, std = mean.unsqueeze(1), log_std.exp().unsqueeze(1)
    act_s, logp_s = tanh_gaussian(mean, std, eps_s)  # (B, n + 1, A), (B, n + 1)
    # SAC actor loss: E[α log π(ã|s) − min_j Q_j(s, ã)], critic parameters fixed
    frozen = copy.deepcopy(critics).requires_grad_(False)
    actor_loss = (alpha * logp_s[:, 0] - frozen(b.obs, act_s[:, 0]).min(0).values).mean()
    alpha_loss = -(log_alpha * (logp_s[:, 0].detach() - A)).mean()  # target entropy −A
    with torch.no_grad():
        mean_n, log_std_n = actor(b.obs_next)
        act_n, logp_n = tanh_gaussian(mean_n.unsqueeze(1), log_std_n.exp().unsqueeze(1), eps_next)
        v_next = critics_t(b.obs_next, act_n[:, 0]).min(0).values
        if backup_entropy:
            v_next = v_next - alpha * logp_n[:, 0]
        y = b.rew + b.discount * v_next
    critic_loss = torch.zeros(())
    gaps = []
    for j in range(2):
        q_data = critics(b.obs, b.act)[j]
        terms = [
            critics(b.obs, uniform * 2 - 1)[j] - A * math.log(0.5),  # Q − log U(−1, 1)^A
            critics(b.obs, act_s[:, 1:].detach())[j] - logp_s[:, 1:].detach(),
            critics(b.obs, act_n[:, 1:])[j] - logp_n[:, 1:],
        ]
        gap = (torch.logsumexp(torch.cat(terms, dim=1), dim=1) - q_data).mean()
        gaps.append(gap)
        td = ((q_data - y) ** 2).mean()
        if with_lagrange:
            critic_loss = critic_loss + td + log_alpha_prime.exp().detach() * excess(gap)
        else:
            critic_loss = critic_loss + td + w * gap
    prime_loss = -torch.stack([log_alpha_prime.exp() * excess(g.detach()) for g in gaps]).mean()
    sgd_step(params(critics), critic_loss)
    sgd_step(params(actor), actor_loss)
    sgd_step([log_alpha], alpha_loss)
    if with_lagrange:
        sgd_step([log_alpha_prime], prime_loss)
    polyak(critics_t, critics, 0.05)

    assert stats.cql_loss == pytest.approx(torch.stack(gaps).mean().item(), rel=1e-5)
    assert stats.critic_loss == pytest.approx(critic_loss.item(), rel=1e-5)
    assert stats.actor_loss == pytest.approx(actor_loss.item(), rel=1e-5, abs=1e-6)
    assert stats.alpha_loss == pytest.approx(alpha_loss.item(), rel=1e-5, abs=1e-7)
    assert_same(algo.policy.actor, actor, "actor")
    assert_same(algo.critics, critics, "critics")
    assert_same(algo.critics_target, critics_t, "critics_target")
    torch.testing.assert_close(algo.log_alpha.detach(), log_alpha.detach())
    if with_lagrange:
        torch.testing.assert_close(algo.log_cql_alpha.detach(), log_alpha_prime.detach())
        gap_mean = torch.stack(gaps).mean().item()
        if threshold == 6.0:
            assert gap_mean < threshold < w * gap_mean  # the forms disagree here
        above = excess(torch.tensor(gap_mean)).item() > 0
        grew = algo.log_cql_alpha.item() > 0.0  # α' started at 1
        assert grew == above, "α' must grow exactly when the (weighted) gap exceeds τ"
    else:
        assert algo.log_cql_alpha.item() == 0.0 and stats.cql_alpha is None


@pytest.mark.parametrize(
    ("target_update_freq", "double_q"),
    [(0, False), (2, False), (2, True)],
    ids=["default_online_target", "target_network", "double_q"],
)
def test_discrete_cql_matches_qr_dqn_and_cql_h(
    target_update_freq: int, double_q: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QR-DQN's target ``T θ_j = r + γ(1−d) θ'_j(s', a*)``, ``a* = argmax_a mean_j θ'_j(s', a)``
    (the default ``target_update_freq=0``: θ' is the online network, without gradient;
    ``double_q``: a* from the online network), the quantile Huber loss, plus
    ``w · E[log Σ_a exp Q(s, a) − Q(s, a_D)]``; one SGD step. With a target network it is
    a copy taken at step 0 (before the update) and again every ``target_update_freq`` steps."""
    torch.manual_seed(0)
    net = QuantileQNet(MLPTrunk(4, [16]), NUM_ACTIONS, num_quantiles=NUM_QUANTILES)
    algo = DiscreteCQL(
        policy=QValuePolicy(model=net, action_space=DISCRETE),
        optim=SGD,
        min_q_weight=2.0,
        target_update_freq=target_update_freq,
        kappa=1.0,
        double_q=double_q,
    )
    for step in range(2):
        ref = copy.deepcopy(net)
        target_net: nn.Module | None = None
        if algo.model_target is not None:
            displace_targets(algo, seed=70 + step)  # step 0 copies the network over it
            target_net = copy.deepcopy(net if step == 0 else algo.model_target)
        b = discrete_batch(step)
        stats = one_update(algo, b, seed=51, monkeypatch=monkeypatch)
        rows = torch.arange(B)
        with torch.no_grad():
            bootstrap_net = ref if target_net is None else target_net
            next_dist = bootstrap_net(b.obs_next)  # (B, A, N)
            chooser = ref(b.obs_next) if double_q else next_dist
            a_star = chooser.mean(2).argmax(1)
            target = b.rew.unsqueeze(1) + b.discount.unsqueeze(1) * next_dist[rows, a_star]
        quantiles = ref(b.obs)
        qr = quantile_huber(quantiles[rows, b.act], target, kappa=1.0).mean()
        q = quantiles.mean(2)
        cql = (torch.logsumexp(q, 1) - q[rows, b.act]).mean()
        loss = qr + 2.0 * cql
        sgd_step(params(ref), loss)
        assert stats.qr_loss == pytest.approx(qr.item(), rel=1e-5)
        assert stats.cql_loss == pytest.approx(cql.item(), rel=1e-5)
        assert stats.loss == pytest.approx(loss.item(), rel=1e-5)
        assert_same(net, ref, f"step {step}: net")
        if algo.model_target is not None and target_net is not None:
            assert_same(algo.model_target, target_net, f"step {step}: target")


def test_discrete_cql_with_one_quantile_is_half_of_dqn_cql(monkeypatch: pytest.MonkeyPatch) -> None:
    """One quantile, the double-DQN target and w = ½ (``quality_table.py``'s ``cql-dqn``)
    minimise exactly half of CQL on double DQN as d3rlpy writes it: ``Huber(Q(s, a), r + γ
    (1 − d) Q'(s', argmax_a Q(s', a))) + α · E[log Σ_a exp Q(s, a) − Q(s, a_D)]`` at α = 1 —
    the same Adam steps (invariant to the scale of the loss)."""
    torch.manual_seed(1)
    net = QuantileQNet(MLPTrunk(4, [16]), NUM_ACTIONS, num_quantiles=1)
    algo = DiscreteCQL(
        policy=QValuePolicy(model=net, action_space=DISCRETE), optim=SGD, min_q_weight=0.5,
        target_update_freq=2, kappa=1.0, double_q=True,
    )  # fmt: skip
    for step in range(2):
        ref = copy.deepcopy(net)
        assert algo.model_target is not None
        target_net = copy.deepcopy(algo.model_target)
        b = discrete_batch(step)
        stats = one_update(algo, b, seed=52, monkeypatch=monkeypatch)
        rows = torch.arange(B)
        with torch.no_grad():
            a_next = ref(b.obs_next)[..., 0].argmax(1)  # the online network chooses
            y = b.rew + b.discount * target_net(b.obs_next)[..., 0][rows, a_next]
        q = ref(b.obs)[..., 0]
        td = F.huber_loss(q[rows, b.act], y, delta=1.0)
        conservative = (torch.logsumexp(q, 1) - q[rows, b.act]).mean()
        dqn_cql = td + 1.0 * conservative
        assert stats.loss == pytest.approx(0.5 * dqn_cql.item(), rel=1e-5)
        sgd_step(params(ref), 0.5 * dqn_cql)
        assert_same(net, ref, f"step {step}: net")
        if algo.model_target is not None and target_net is not None:
            assert_same(algo.model_target, target_net, f"step {step}: target (not copied)")

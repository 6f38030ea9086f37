"""Reference tests: one update of each algorithm on a fixed mini-batch equals an independent
computation of its paper's equations, written out here.

Each test builds an algorithm whose optimizers are plain SGD (learning rate ``LR``), copies
its networks, draws the same random numbers the update draws (same seed, same shapes, in the
update's order), computes the losses from the paper with those copies — networks are only
*evaluated* through their modules; every loss, target, sample, log-density, weight and
multiplier is computed here — takes the SGD steps by hand, and compares every parameter
(and the reported statistics) with the algorithm's. A loss with a wrong sign, a missing
factor, a missing ``detach`` or a step in the wrong order changes the parameters by about
``LR`` × the gradient, far above the tolerance.

Papers: CQL — Kumar et al. 2020 (arXiv:2006.04779), Eq. 4 and Appendix F, with SAC
(Haarnoja et al. 2018, arXiv:1812.05905); BCQ — Fujimoto et al. 2019 (arXiv:1812.02900),
Algorithm 1; TD3+BC — Fujimoto & Gu 2021 (arXiv:2106.06860), Eqs. 3–4, on TD3 (Fujimoto et
al. 2018, arXiv:1802.09477); CRR — Wang et al. 2020 (arXiv:2006.15134), Sec. 3; discrete CQL —
CQL(H) on QR-DQN (Dabney et al. 2018, arXiv:1710.10044, Eqs. 9–10).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

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
    assert_binds,
    assert_same,
    discrete_batch,
    displace_targets,
    fixed_batch,
    moved,
    normal_log_density,
    one_update,
    params,
    polyak,
    quantile_huber,
    saturate,
    sgd_step,
    tanh_gaussian,
)
from tianshou_offline.algorithms import (
    BCQ,
    CQL,
    CRR,
    TD3BC,
    VAE,
    BCQPolicy,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    DiscreteActorPolicy,
    DiscreteBCQ,
    DiscreteBCQPolicy,
    DiscreteCQL,
    DiscreteCRR,
    DualHeadNet,
    GaussianActor,
    GaussianPolicy,
    MLPTrunk,
    Perturbation,
    QuantileQNet,
    QValuePolicy,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- TD3+BC


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


# --------------------------------------------------------------------------- CQL


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


# --------------------------------------------------------------------------- BCQ


def test_bcq_matches_algorithm_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """In Algorithm 1's order: the VAE step (reconstruction + ½ KL), the critic step on the
    soft clipped double-Q target over n perturbed samples of the *updated* VAE at s' (Eq. 13),
    the perturbation step on ``−Q_1(s, ξ(s, G(s)))`` with the *updated* critic, Polyak
    targets for the critics and the perturbation model."""
    torch.manual_seed(0)
    vae = VAE(D, A, H)
    policy = BCQPolicy(
        vae=vae,
        perturbation=Perturbation(D, A, H, phi=0.05),
        critics=CriticEnsemble(D, A, H),
        action_space=ACT_SPACE,
        observation_space=OBS_SPACE,
    )
    n, lmbda, tau = 4, 0.75, 0.05
    algo = BCQ(
        policy=policy,
        vae_optim=SGD,
        actor_perturbation_optim=SGD,
        critic_optim=SGD,
        tau=tau,
        lmbda=lmbda,
        num_sampled_actions=n,
    )
    g, xi, critics = (
        copy.deepcopy(vae),
        copy.deepcopy(policy.perturbation),
        copy.deepcopy(policy.critics),
    )
    displace_targets(algo)
    xi_t, critics_t = copy.deepcopy(algo.perturbation_target), copy.deepcopy(algo.critics_target)
    b = fixed_batch()
    stats = one_update(algo, b, seed=31, monkeypatch=monkeypatch)

    latent = g.latent_dim
    torch.manual_seed(31)
    eps_z = torch.randn(B, latent)
    z_next = torch.randn(B, n, latent).clamp(-0.5, 0.5)
    z_act = torch.randn(B, latent).clamp(-0.5, 0.5)
    # 1. VAE: ‖a − D(s, z)‖² + ½ KL(N(μ, σ) ‖ N(0, 1)), z = μ + σ ε
    mu, log_sigma = g.mean_and_log_std(g.encoder(b.obs, b.act)).chunk(2, dim=-1)
    log_sigma = log_sigma.clamp(-4.0, 15.0)
    recon = torch.tanh(g.decoder(b.obs, mu + log_sigma.exp() * eps_z))
    kl = (-0.5 * (1 + 2 * log_sigma - mu**2 - (2 * log_sigma).exp())).mean()
    vae_loss = ((recon - b.act) ** 2).mean() + 0.5 * kl
    sgd_step(params(g), vae_loss)
    # 2. critic (Eq. 13) with the updated VAE and the target perturbation model
    with torch.no_grad():
        sampled = torch.tanh(g.decoder(b.obs_next.unsqueeze(1), z_next))  # (B, n, A)
        q_next = critics_t(b.obs_next, xi_t(b.obs_next, sampled))  # (2, B, n)
        soft = lmbda * q_next.min(0).values + (1 - lmbda) * q_next.max(0).values
        y = b.rew + b.discount * soft.max(1).values
    q = critics(b.obs, b.act)
    critic_loss = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
    sgd_step(params(critics), critic_loss)
    # 3. perturbation model (Eq. 12) with the updated critic
    with torch.no_grad():
        proposals = torch.tanh(g.decoder(b.obs, z_act))
    actor_loss = -critics(b.obs, xi(b.obs, proposals))[0].mean()
    sgd_step(params(xi), actor_loss)
    polyak(critics_t, critics, tau)
    polyak(xi_t, xi, tau)

    assert stats.vae_loss == pytest.approx(vae_loss.item(), rel=1e-5)
    assert stats.kl_loss == pytest.approx(kl.item(), rel=1e-5)
    assert stats.critic_loss == pytest.approx(critic_loss.item(), rel=1e-5)
    assert stats.actor_loss == pytest.approx(actor_loss.item(), rel=1e-5)
    for ours, ref, what in [
        (vae, g, "vae"),
        (policy.critics, critics, "critics"),
        (policy.perturbation, xi, "perturbation"),
        (algo.critics_target, critics_t, "critics_target"),
        (algo.perturbation_target, xi_t, "perturbation_target"),
    ]:
        assert_same(ours, ref, what)


# --------------------------------------------------------------------------- CRR


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


# --------------------------------------------------------------------------- discrete

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


def test_discrete_bcq_matches_the_paper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fujimoto et al. 2019 (arXiv:1910.01708), Sec. 4 and Algorithm 1: ``y = r + γ(1−d)
    Q'(s', a')`` with ``a' = argmax Q(s', a)`` (online network) over the actions whose
    ``G(a|s') / max G(·|s') > τ``; Huber loss of ``Q(s, a)``, plus ``−log G(a|s)`` and
    ``λ mean(logits²)``; one SGD step on the sum. The target network is a copy of the network
    at every ``target_update_freq``-th step (before the update) and stays in between."""
    torch.manual_seed(0)
    net = DualHeadNet(MLPTrunk(4, [16]), NUM_ACTIONS, [16])
    threshold, penalty = 0.85, 0.3
    algo = DiscreteBCQ(
        policy=DiscreteBCQPolicy(
            model=net, action_space=DISCRETE, unlikely_action_threshold=threshold
        ),
        optim=SGD,
        target_update_freq=2,
        imitation_logits_penalty=penalty,
        huber_delta=1.0,
    )
    constrained = 0
    for step in range(2):
        ref = copy.deepcopy(net)
        displace_targets(algo, seed=90 + step)  # step 0 copies the network over it
        target_net = copy.deepcopy(net if step == 0 else algo.model_target)
        b = discrete_batch(step)
        stats = one_update(algo, b, seed=71, monkeypatch=monkeypatch)

        rows = torch.arange(B)
        with torch.no_grad():
            q_next, logits_next = ref(b.obs_next)
            g = torch.softmax(logits_next, 1)
            allowed = g / g.max(1, keepdim=True).values > threshold
            a_next = torch.where(allowed, q_next, torch.full_like(q_next, -1e9)).argmax(1)
            constrained += int((a_next != q_next.argmax(1)).sum())
            y = b.rew + b.discount * target_net(b.obs_next)[0][rows, a_next]
        q, logits = ref(b.obs)
        q_loss = F.huber_loss(q[rows, b.act], y, delta=1.0)
        imitation = -torch.log_softmax(logits, 1)[rows, b.act].mean()
        loss = q_loss + imitation + penalty * (logits**2).mean()
        sgd_step(params(ref), loss)

        assert stats.loss == pytest.approx(loss.item(), rel=1e-5)
        assert stats.q_target == pytest.approx(y.mean().item(), rel=1e-5)
        assert_same(net, ref, f"step {step}: net")
        assert_same(algo.model_target, target_net, f"step {step}: target")
    assert constrained > 0, "the threshold must exclude some greedy actions"


# --------------------------------------------------------------------------- mutation check


def test_every_mutation_applies() -> None:
    """Each mutation of ``tests/helpers/mutate_updates.py`` still finds its snippet exactly once in
    the update it mutates (a renamed line would silently drop it from the check)."""
    from tests.helpers import mutate_updates

    names = [m.name for m in mutate_updates.MUTATIONS]
    assert len(names) == len(set(names))
    for mutation in mutate_updates.MUTATIONS:
        with mutate_updates.applied(mutation):
            pass


def test_mutation_script_kills_mutations() -> None:
    """Two mutations of the script (a target network replaced by the online one, a clip
    deleted) run through it in this process and are killed by the reference tests; the whole
    list: ``python -m tests.helpers.mutate_updates``."""
    from tests.helpers import mutate_updates

    chosen = [
        m
        for m in mutate_updates.MUTATIONS
        if m.name in ("td3bc-target-critics-online", "td3-noise-clip-deleted")
    ]
    assert len(chosen) == 2
    assert mutate_updates.run(chosen) == []

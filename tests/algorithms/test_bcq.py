"""BCQ, continuous and discrete: one update on a fixed mini-batch equals an independent
computation of the paper's equations, written out here (the method: ``tests/algorithms/test_td3bc.py``'s
docstring; helpers in ``tests/helpers/reference.py``).

Papers: BCQ — Fujimoto et al. 2019 (arXiv:1812.02900), Algorithm 1; discrete BCQ — Fujimoto
et al. 2019 (arXiv:1910.01708).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

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
    assert_same,
    discrete_batch,
    displace_targets,
    fixed_batch,
    one_update,
    params,
    polyak,
    sgd_step,
)
from tianshou_offline.algorithms import (
    BCQ,
    VAE,
    BCQPolicy,
    CriticEnsemble,
    DiscreteBCQ,
    DiscreteBCQPolicy,
    DualHeadNet,
    MLPTrunk,
    Perturbation,
)


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

"""BCQ (:class:`~tianshou_offline.algorithms.continuous.bcq.BCQ`) for K seeds at once.

The plain update (see that module for the paper's equations) with a leading seed dimension.
The VAE's sampling happens outside its networks (a draw inside a ``vmap`` is refused): its
encoder, mean-and-log-std head and decoder are stacked separately, and the reparameterised
latents and the prior samples are drawn per seed in the plain update's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tianshou_offline.algorithms.continuous.bcq import BCQ, BCQTrainingStats
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.seeds.core import SeedBatch, SeedBatchStats

__all__ = ["SeedBCQ"]


class SeedBCQ(SeedBatch[BCQ[Any], Transitions, BCQTrainingStats]):
    """K seeds of :class:`BCQ` (see :mod:`tianshou_offline.algorithms.seeds.core`).

    :param members: K ``BCQ`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = BCQ

    def __init__(
        self, members: Sequence[BCQ[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(members, rng_states)
        first = members[0]
        plain: list[Any] = list(members)
        vaes = [m.policy.vae for m in plain]
        self.encoder = self._stack([v.encoder for v in vaes])
        self.mean_and_log_std = self._stack([v.mean_and_log_std for v in vaes])
        self.decoder = self._stack([v.decoder for v in vaes])
        self.latent_dim: int = vaes[0].latent_dim
        self.latent_clip: float = vaes[0].latent_clip
        self.perturbation = self._stack([m.policy.perturbation for m in plain])
        self.perturbation_target = self._stack_target(
            self.perturbation, [m.perturbation_target for m in plain]
        )
        self.critics = self._stack([m.policy.critics for m in plain])
        self.critics_target = self._stack_target(self.critics, [m.critics_target for m in plain])
        self.vae_optim = self._mirror_optimizer("vae_optim")
        self.critic_optim = self._mirror_optimizer("critic_optim")
        self.actor_optim = self._mirror_optimizer("actor_optim")
        self.tau: float = first.tau
        self.lmbda: float = first.lmbda
        self.num_sampled_actions: int = first.num_sampled_actions
        self.kl_weight: float = first.kl_weight
        self.perturb_target_actions: bool = first.perturb_target_actions

    def decode(self, obs: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """The VAE's ``decode`` from the clipped prior, each seed's latents from its own
        generator: ``obs (K, B, D)`` → ``(K, B, A)`` or ``(K, B, N, A)``."""
        b = obs.shape[1]
        shape = (b, self.latent_dim) if num_samples is None else (b, num_samples, self.latent_dim)
        z = self.rng.randn(shape).clamp(-self.latent_clip, self.latent_clip)
        state = obs.unsqueeze(2) if num_samples is not None else obs
        return torch.tanh(self.decoder(state, z))

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[BCQTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)

        # 1. generative model (the VAE's forward, its noise per seed)
        mean, log_std = self.mean_and_log_std(self.encoder(b.obs, b.act)).chunk(2, dim=-1)
        log_std = log_std.clamp(-4.0, 15.0)
        z = mean + log_std.exp() * self.rng.randn(mean.shape[1:])
        recon = torch.tanh(self.decoder(b.obs, z))
        recon_loss = (recon - b.act).pow(2).mean(dim=(1, 2))
        kl = -0.5 * (1.0 + 2.0 * log_std - mean.pow(2) - (2.0 * log_std).exp())
        kl_loss = kl.mean(dim=(1, 2))
        vae_loss = recon_loss + self.kl_weight * kl_loss
        self.vae_optim.step(vae_loss.sum())

        # 2. critic (Eq. 13)
        with torch.no_grad():
            act_next = self.decode(b.obs_next, num_samples=self.num_sampled_actions)
            if self.perturb_target_actions:
                act_next = self.perturbation_target(b.obs_next, act_next)
            q_next = self.critics_target(b.obs_next, act_next)  # (K, E, B, n)
            q_next = (
                self.lmbda * q_next.min(dim=1).values
                + (1.0 - self.lmbda) * q_next.max(dim=1).values
            )
            target = b.rew + b.discount * q_next.max(dim=2).values  # (K, B)
        q_data = self.critics(b.obs, b.act)  # (K, E, B)
        critic_loss = (q_data - target.unsqueeze(1)).pow(2).mean(dim=2).sum(dim=1)
        self.critic_optim.step(critic_loss.sum())

        # 3. perturbation model (Eq. 11)
        with torch.no_grad():
            act_vae = self.decode(b.obs)
        act_pi = self.perturbation(b.obs, act_vae)
        q_pi = self.critics(b.obs, act_pi, member=0, detach_params=True)  # (K, B)
        actor_loss = -q_pi.mean(dim=1)
        self.actor_optim.step(actor_loss.sum())

        # 4. targets
        self._update_targets(self.tau)

        return self._seed_stats(
            {
                "actor_loss": actor_loss,
                "critic_loss": critic_loss,
                "vae_loss": vae_loss,
                "recon_loss": recon_loss,
                "kl_loss": kl_loss,
                "q_data": q_data.mean(dim=(1, 2)),
                "q_target": target.mean(dim=1),
                "q_policy": q_pi.mean(dim=1),
            }
        )

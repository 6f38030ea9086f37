"""AWAC (:class:`~tianshou_offline.algorithms.continuous.awac.AWAC`) for K seeds at once.

The plain update (see that module for the paper's equations) with a leading seed dimension:
the critic and the actor step in the plain order, the next-state actions and the actor's
samples for ``V(s)`` are drawn per seed in the plain update's order, and the advantage
weights (d3rlpy's normalised form included) are taken over each seed's own batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tianshou_offline.algorithms.continuous.awac import AWAC, AWACTrainingStats, advantage_weights
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.policies import gaussian_actions, gaussian_log_prob
from tianshou_offline.algorithms.seeds.core import SeedBatch, SeedBatchStats

__all__ = ["SeedAWAC"]


class SeedAWAC(SeedBatch[AWAC[Any], Transitions, AWACTrainingStats]):
    """K seeds of :class:`AWAC` (see :mod:`tianshou_offline.algorithms.seeds.core`).

    :param members: K ``AWAC`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = AWAC

    def __init__(
        self, members: Sequence[AWAC[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(members, rng_states)
        first = members[0]
        self.squash = first.policy.squash
        self.actor = self._stack([m.policy.actor for m in members])
        self.critics = self._stack([m.critics for m in members])
        self.critics_target = self._stack_target(self.critics, [m.critics_target for m in members])
        self.actor_optim = self._mirror_optimizer("actor_optim")
        self.critic_optim = self._mirror_optimizer("critic_optim")
        self.lam, self.max_weight = first.lam, first.max_weight
        self.normalize_weights = first.normalize_weights
        self.num_sampled_actions, self.tau = first.num_sampled_actions, first.tau

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[AWACTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)
        size = b.act.shape[1:]  # (B, A) per seed

        # 1. critic: evaluate the current actor, a' ~ π(·|s')
        with torch.no_grad():
            mean_n, log_std_n = self.actor(b.obs_next)
            act_next = gaussian_actions(
                mean_n, log_std_n, squash=self.squash, noise=self.rng.randn(size)
            )
            q_next = self.critics_target(b.obs_next, act_next).min(dim=1).values  # (K, B)
            target = b.rew + b.discount * q_next
        q_data = self.critics(b.obs, b.act)  # (K, E, B)
        critic_loss = (q_data - target.unsqueeze(1)).pow(2).mean(dim=2).sum(dim=1)
        self.critic_optim.step(critic_loss.sum())

        # 2. actor: advantage-weighted maximum likelihood with the updated critics
        mean, log_std = self.actor(b.obs)
        with torch.no_grad():
            noise = self.rng.randn((size[0], self.num_sampled_actions, size[1]))
            act_k = gaussian_actions(
                mean, log_std, squash=self.squash, num_samples=self.num_sampled_actions, noise=noise
            )  # (K, B, N, A)
            q_both = self.critics(b.obs, torch.cat([b.act.unsqueeze(2), act_k], dim=2))
            q_min = q_both.min(dim=1).values  # (K, B, 1 + N)
            v = q_min[..., 1:].mean(dim=-1)
            adv = q_min[..., 0] - v  # (K, B)
            w = advantage_weights(
                adv, self.lam, max_weight=self.max_weight, normalize=self.normalize_weights
            )
        log_prob = gaussian_log_prob(mean, log_std, b.act, squash=self.squash)  # (K, B)
        actor_loss = -(w * log_prob).mean(dim=1)
        self.actor_optim.step(actor_loss.sum())

        # 3. targets
        self._update_targets(self.tau)

        clipped = (
            (torch.exp(adv / self.lam) >= self.max_weight).float().mean(dim=1)
            if self.max_weight is not None and not self.normalize_weights
            else torch.zeros(self.num_seeds, device=adv.device)
        )
        return self._seed_stats(
            {
                "critic_loss": critic_loss,
                "actor_loss": actor_loss,
                "advantage": adv.mean(dim=1),
                "weight": w.mean(dim=1),
                "clipped_weight": clipped,
                "log_prob": log_prob.mean(dim=1),
                "q_data": q_data.mean(dim=(1, 2)),
                "v": v.mean(dim=1),
                "q_target": target.mean(dim=1),
            }
        )

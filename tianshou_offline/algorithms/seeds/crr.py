"""CRR (:class:`~tianshou_offline.algorithms.continuous.crr.CRR`) for K seeds at once.

The plain update (see that module for the paper's equations) with a leading seed dimension:
the critic and advantage-filtered regression losses reduce over the batch per seed, and the
policy's next and sampled actions are drawn per seed, in the plain update's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tianshou_offline.algorithms.continuous.crr import CRR, CRRTrainingStats, crr_weights
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.policies import gaussian_actions, gaussian_log_prob
from tianshou_offline.algorithms.core import joint_step
from tianshou_offline.algorithms.seeds.core import SeedBatch, SeedBatchStats

__all__ = ["SeedCRR"]


class SeedCRR(SeedBatch[CRR[Any], Transitions, CRRTrainingStats]):
    """K seeds of :class:`CRR` (see :mod:`tianshou_offline.algorithms.seeds.core`).

    :param members: K ``CRR`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = CRR

    def __init__(
        self, members: Sequence[CRR[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(members, rng_states)
        first = members[0]
        self._stack_actor_critics(members)
        self.squash: bool = first.policy.squash
        self.tau: float = first.tau
        self.weight: str = first.weight
        self.beta: float = first.beta
        self.max_weight: float = first.max_weight
        self.advantage: str = first.advantage
        self.num_sampled_actions: int = first.num_sampled_actions
        self.target_update_freq: int = first.target_update_freq

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[CRRTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)
        squash = self.squash
        size = b.act.shape[1:]  # (B, A) per seed

        # 1. critic: evaluate the (target) policy
        with torch.no_grad():
            mean_next, log_std_next = self.actor_target(b.obs_next)
            act_next = gaussian_actions(
                mean_next, log_std_next, squash=squash, noise=self.rng.randn(size)
            )
            q_next = self.critics_target(b.obs_next, act_next).min(dim=1).values  # (K, B)
            target = b.rew + b.discount * q_next
        q_data = self.critics(b.obs, b.act)  # (K, E, B)
        critic_loss = (q_data - target.unsqueeze(1)).pow(2).mean(dim=2).sum(dim=1)  # (K,)

        # 2. advantage from m policy samples
        mean, log_std = self.actor(b.obs)
        with torch.no_grad():
            m = self.num_sampled_actions
            act_k = gaussian_actions(
                mean.detach(),
                log_std.detach(),
                squash=squash,
                num_samples=m,
                noise=self.rng.randn((size[0], m, size[1])),
            )  # (K, B, m, A)
            q_k = self.critics(b.obs, act_k).min(dim=1).values  # (K, B, m)
            baseline = q_k.mean(dim=2) if self.advantage == "mean" else q_k.max(dim=2).values
            adv = q_data.detach().min(dim=1).values - baseline  # (K, B)
            w = crr_weights(adv, self.weight, self.beta, self.max_weight)

        # 3. actor: advantage-filtered regression
        log_prob = gaussian_log_prob(mean, log_std, b.act, squash=squash)  # (K, B)
        actor_loss = -(w * log_prob).mean(dim=1)

        joint_step(critic_loss.sum() + actor_loss.sum(), [self.critic_optim, self.actor_optim])
        # 4. targets
        if (self.num_updates + 1) % self.target_update_freq == 0:
            self._update_targets(self.tau)

        return self._seed_stats(
            {
                "actor_loss": actor_loss,
                "critic_loss": critic_loss,
                "advantage": adv.mean(dim=1),
                "weight": w.mean(dim=1),
                "positive_advantage": (adv > 0).float().mean(dim=1),
                "log_prob": log_prob.mean(dim=1),
                "q_data": q_data.mean(dim=(1, 2)),
                "q_target": target.mean(dim=1),
            }
        )

"""IQL (:class:`~tianshou_offline.algorithms.continuous.iql.IQL`) for K seeds at once.

The plain update (see that module for the paper's equations) with a leading seed dimension:
expectile, advantage-weighted and TD losses reduce over the batch only, per seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.iql import IQL, IQLTrainingStats, expectile_loss
from tianshou_offline.algorithms.continuous.policies import GaussianPolicy, gaussian_log_prob
from tianshou_offline.algorithms.seeds.core import SeedBatch, SeedBatchStats

__all__ = ["SeedIQL"]


class SeedIQL(SeedBatch[IQL[Any], Transitions, IQLTrainingStats]):
    """K seeds of :class:`IQL` (see :mod:`tianshou_offline.algorithms.seeds.core`).

    :param members: K ``IQL`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = IQL

    def __init__(
        self, members: Sequence[IQL[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(members, rng_states)
        first = members[0]
        self.gaussian = isinstance(first.policy, GaussianPolicy)
        self.squash = bool(getattr(first.policy, "squash", False))
        self.actor = self._stack([m.policy.actor for m in members])
        self.critics = self._stack([m.critics for m in members])
        self.critics_target = self._stack_target(self.critics, [m.critics_target for m in members])
        self.value = self._stack([m.value for m in members])
        self.actor_optim = self._mirror_optimizer("actor_optim")
        self.critic_optim = self._mirror_optimizer("critic_optim")
        self.value_optim = self._mirror_optimizer("value_optim")
        self.expectile, self.beta = first.expectile, first.beta
        self.max_weight, self.tau = first.max_weight, first.tau

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[IQLTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)
        n = b.obs.shape[1]

        # 1. value: expectile regression on the target critics (Eq. 5)
        with torch.no_grad():
            q_hat = self.critics_target(b.obs, b.act).min(dim=1).values  # (K, B)
        value_loss = expectile_loss(q_hat - self.value(b.obs), self.expectile).mean(dim=1)
        self.value_optim.step(value_loss.sum())

        with torch.no_grad():
            v_both = self.value(torch.cat([b.obs, b.obs_next], dim=1))
            v, v_next = v_both[:, :n], v_both[:, n:]
            adv = q_hat - v
            w = torch.exp(self.beta * adv).clamp(max=self.max_weight)
            target = b.rew + b.discount * v_next

        # 2. actor: advantage-weighted regression (Eq. 7)
        if self.gaussian:
            mean, log_std = self.actor(b.obs)
            bc = gaussian_log_prob(mean, log_std, b.act, squash=self.squash)  # (K, B)
            actor_loss = -(w * bc).mean(dim=1)
        else:
            bc = (self.actor(b.obs) - b.act).pow(2).sum(dim=-1)
            actor_loss = (w * bc).mean(dim=1)
        self.actor_optim.step(actor_loss.sum())

        # 3. critic: TD regression towards r + γ V(s') (Eq. 6)
        q_data = self.critics(b.obs, b.act)  # (K, E, B)
        critic_loss = (q_data - target.unsqueeze(1)).pow(2).mean(dim=2).sum(dim=1)
        self.critic_optim.step(critic_loss.sum())

        # 4. targets
        self._update_targets(self.tau)

        return self._seed_stats(
            {
                "value_loss": value_loss,
                "critic_loss": critic_loss,
                "actor_loss": actor_loss,
                "advantage": adv.mean(dim=1),
                "weight": w.mean(dim=1),
                "clipped_weight": (w >= self.max_weight).float().mean(dim=1),
                "bc": bc.mean(dim=1),
                "v_data": v.mean(dim=1),
                "q_data": q_data.mean(dim=(1, 2)),
                "q_target": target.mean(dim=1),
            }
        )

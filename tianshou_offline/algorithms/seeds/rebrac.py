"""ReBRAC (:class:`~tianshou_offline.algorithms.continuous.rebrac.ReBRAC`) for K seeds at once.

The plain update (see that module for the paper's equations) with a leading seed dimension,
on :class:`~tianshou_offline.algorithms.seeds.td3_bc.SeedTD3Base`: the critic and actor
penalties, the Q normalisation and the statistics reduce over the batch per seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tianshou_offline.algorithms.continuous.rebrac import (
    NextActionTransitions,
    ReBRAC,
    ReBRACTrainingStats,
)
from tianshou_offline.algorithms.seeds.core import SeedBatchStats
from tianshou_offline.algorithms.seeds.td3_bc import SeedTD3Base

__all__ = ["SeedReBRAC"]


class SeedReBRAC(SeedTD3Base[ReBRAC[Any], NextActionTransitions, ReBRACTrainingStats]):
    """K seeds of :class:`ReBRAC` (see :mod:`tianshou_offline.algorithms.seeds.core`).

    :param members: K ``ReBRAC`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = ReBRAC

    def __init__(
        self, members: Sequence[ReBRAC[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(members, rng_states)
        first = members[0]
        self.actor_bc_coef: float = first.actor_bc_coef
        self.critic_bc_coef: float = first.critic_bc_coef
        self.normalize_q: bool = first.normalize_q

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[ReBRACTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)

        # 1. critic: clipped double Q with smoothing, minus the critic penalty β₂‖ã' − a'‖²
        with torch.no_grad():
            act_next = self.smoothed_target_action(b.obs_next)
            critic_bc = (act_next - b.act_next).pow(2).sum(dim=-1) * b.next_known  # (K, B)
            q_next = self.critics_target(b.obs_next, act_next).min(dim=1).values  # (K, B)
            target = b.rew + b.discount * (q_next - self.critic_bc_coef * critic_bc)
        q_data = self.critics(b.obs, b.act)  # (K, E, B)
        critic_loss = (q_data - target.unsqueeze(1)).pow(2).mean(dim=2).sum(dim=1)  # (K,)
        self.critic_optim.step(critic_loss.sum())

        # 2. actor (delayed): λ min_j Q_j(s, π(s)) − β₁‖π(s) − a‖², per seed
        if self.actor_step_due():
            act_pi = self.actor(b.obs)
            q_pi = self.critics(b.obs, act_pi, detach_params=True).min(dim=1).values  # (K, B)
            lmbda = (
                1.0 / q_pi.abs().mean(dim=1).detach()
                if self.normalize_q
                else torch.ones(self.num_seeds, device=q_pi.device)
            )
            actor_bc = (act_pi - b.act).pow(2).sum(dim=-1)  # (K, B)
            actor_loss = (self.actor_bc_coef * actor_bc - lmbda.unsqueeze(1) * q_pi).mean(dim=1)
            self.actor_optim.step(actor_loss.sum())
            # 3. targets
            self._update_targets(self.tau)
            self._last_actor = torch.stack(
                [
                    actor_loss.detach(),
                    actor_bc.detach().mean(dim=1),
                    lmbda,
                    q_pi.detach().mean(dim=1),
                ]
            )
        known = b.next_known.sum(dim=1).clamp(min=1.0)
        actor_f, actor_bc_f, lmbda_f, q_pi_f = self._last_actor
        return self._seed_stats(
            {
                "critic_loss": critic_loss,
                "critic_bc": critic_bc.sum(dim=1) / known,
                "actor_loss": actor_f,
                "actor_bc": actor_bc_f,
                "lmbda": lmbda_f,
                "q_data": q_data.mean(dim=(1, 2)),
                "q_target": target.mean(dim=1),
                "q_policy": q_pi_f,
            }
        )

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

    def _td_target(
        self, b: NextActionTransitions, act_next: torch.Tensor, q_next: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clipped double Q with smoothing, minus the critic penalty β₂‖ã' − a'‖², per seed."""
        critic_bc = (act_next - b.act_next).pow(2).sum(dim=-1) * b.next_known  # (K, B)
        return b.rew + b.discount * (q_next - self.critic_bc_coef * critic_bc), critic_bc

    def _actor_objective(
        self, b: NextActionTransitions, act_pi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """λ min_j Q_j(s, π(s)) − β₁‖π(s) − a‖², per seed."""
        q_pi = self.critics(b.obs, act_pi, detach_params=True).min(dim=1).values  # (K, B)
        lmbda = (
            1.0 / q_pi.abs().mean(dim=1).detach()
            if self.normalize_q
            else torch.ones(self.num_seeds, device=q_pi.device)
        )
        actor_bc = (act_pi - b.act).pow(2).sum(dim=-1)  # (K, B)
        actor_loss = (self.actor_bc_coef * actor_bc - lmbda.unsqueeze(1) * q_pi).mean(dim=1)
        return actor_loss, q_pi, actor_bc.detach().mean(dim=1), lmbda

    def _variant_stats(
        self, b: NextActionTransitions, penalty: torch.Tensor | None, bc: torch.Tensor
    ) -> dict[str, torch.Tensor | None]:
        known = b.next_known.sum(dim=1).clamp(min=1.0)
        critic_bc = None if penalty is None else penalty.sum(dim=1) / known
        return {"critic_bc": critic_bc, "actor_bc": bc}

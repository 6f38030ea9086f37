"""TD3+BC (:class:`~tianshou_offline.algorithms.continuous.td3_bc.TD3BC`) for K seeds at once.

The update is the plain one (see that module for the paper's equations) with a leading seed
dimension: every reduction is over the batch only, so each seed's losses, λ and statistics
are its own; target-policy smoothing noise is drawn per seed, in the plain update's order.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.td3_bc import TD3BC, TD3BCTrainingStats
from tianshou_offline.algorithms.seeds.core import (
    SeedBatch,
    SeedBatchStats,
    TMember,
    TSeedBatch,
    TSeedStats,
)

__all__ = ["SeedTD3BC", "SeedTD3Base"]


class SeedTD3Base(SeedBatch[TMember, TSeedBatch, TSeedStats]):
    """What the seed batches of TD3+BC and ReBRAC share (as the plain ``TD3Base``): the
    stacked actor, critics and their targets, target-policy smoothing with per-seed noise, the
    delayed actor, and the latest actor statistics of every seed (reported on critic-only
    steps, kept in checkpoints).

    :param members: K plain algorithms of one config.
    :param rng_states: each seed's generator state.
    """

    def __init__(
        self, members: Sequence[TMember], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(members, rng_states)
        first: Any = members[0]
        self._stack_actor_critics(members)
        self.tau: float = first.tau
        self.policy_noise: float = first.policy_noise
        self.noise_clip: float = first.noise_clip
        self.update_actor_freq: int = first.update_actor_freq
        self._last_actor = torch.zeros(4, self.num_seeds, device=self.device)

    def smoothed_target_action(self, obs_next: torch.Tensor) -> torch.Tensor:
        """``clip(π'(s') + clip(ε, −c, c), −1, 1)`` per seed, ``(K, B, A)``; ε from each seed's
        generator (the plain ``TD3Base.smoothed_target_action``)."""
        act_next: torch.Tensor = self.actor_target(obs_next)
        noise = (self.rng.randn(act_next.shape[1:]) * self.policy_noise).clamp(
            -self.noise_clip, self.noise_clip
        )
        return (act_next + noise).clamp(-1.0, 1.0)

    def actor_step_due(self) -> bool:
        """Whether this step updates the actor and the targets (as the plain algorithm)."""
        return self.num_updates % self.update_actor_freq == 0

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[TSeedStats]:
        """The plain ``TD3Base`` step per seed; the variant supplies the TD target
        (:meth:`_td_target`), the actor's objective (:meth:`_actor_objective`) and its own
        statistics (:meth:`_variant_stats`)."""
        b = self._as_transitions(batch)  # every field (K, B, …)

        # 1. critic: clipped double Q-learning with target-policy smoothing
        with torch.no_grad():
            act_next = self.smoothed_target_action(b.obs_next)  # (K, B, A)
            q_next = self.critics_target(b.obs_next, act_next).min(dim=1).values  # (K, B)
            target, penalty = self._td_target(b, act_next, q_next)
        q_data = self.critics(b.obs, b.act)  # (K, E, B)
        critic_loss = (q_data - target.unsqueeze(1)).pow(2).mean(dim=2).sum(dim=1)  # (K,)
        self.critic_optim.step(critic_loss.sum())

        # 2. actor (delayed): the variant's objective, per seed
        if self.actor_step_due():
            act_pi = self.actor(b.obs)
            actor_loss, q_pi, bc, lmbda = self._actor_objective(b, act_pi)
            self.actor_optim.step(actor_loss.sum())
            # 3. targets
            self._update_targets(self.tau)
            self._last_actor = torch.stack(
                [actor_loss.detach(), bc.detach(), lmbda, q_pi.detach().mean(dim=1)]
            )
        actor_f, bc_f, lmbda_f, q_pi_f = self._last_actor
        return self._seed_stats(
            {
                "critic_loss": critic_loss,
                "actor_loss": actor_f,
                "lmbda": lmbda_f,
                "q_data": q_data.mean(dim=(1, 2)),
                "q_target": target.mean(dim=1),
                "q_policy": q_pi_f,
                **self._variant_stats(b, penalty, bc_f),
            }
        )

    @abstractmethod
    def _td_target(
        self, b: TSeedBatch, act_next: torch.Tensor, q_next: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per seed: the TD target ``(K, B)`` and the critic penalty it subtracted (or None)."""

    @abstractmethod
    def _actor_objective(
        self, b: TSeedBatch, act_pi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per seed: the actor's loss ``(K,)``, the Q of π(s) ``(K, B)``, the behaviour-cloning
        term ``(K,)`` and λ ``(K,)``."""

    @abstractmethod
    def _variant_stats(
        self, b: TSeedBatch, penalty: torch.Tensor | None, bc: torch.Tensor
    ) -> dict[str, torch.Tensor | None]:
        """The variant's own statistics fields (its BC term ``bc`` under its name)."""

    def _sync_member(self, k: int) -> None:
        super()._sync_member(k)
        member: Any = self._members[k]
        member._last_actor.copy_(self._last_actor[:, k])  # a (4,) buffer of the member

    def _unsync_member(self, k: int) -> None:
        super()._unsync_member(k)
        member: Any = self._members[k]
        self._last_actor[:, k] = member._last_actor.to(self.device)

    def get_extra_state(self) -> dict[str, Any]:
        return {**super().get_extra_state(), "last_actor": self._last_actor.cpu()}

    def set_extra_state(self, state: Any) -> None:
        super().set_extra_state(state)
        if "last_actor" in state:
            self._last_actor = torch.as_tensor(state["last_actor"]).to(self.device)


class SeedTD3BC(SeedTD3Base[TD3BC[Any], Transitions, TD3BCTrainingStats]):
    """K seeds of :class:`TD3BC` (see :mod:`tianshou_offline.algorithms.seeds.core`).

    :param members: K ``TD3BC`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = TD3BC

    def __init__(
        self, members: Sequence[TD3BC[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(members, rng_states)
        self.alpha: float = members[0].alpha

    def _td_target(
        self, b: Transitions, act_next: torch.Tensor, q_next: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        return b.rew + b.discount * q_next, None

    def _actor_objective(
        self, b: Transitions, act_pi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """λ Q_1(s, π(s)) − (π(s) − a)², per seed."""
        q_pi = self.critics(b.obs, act_pi, member=0, detach_params=True)  # (K, B)
        lmbda = self.alpha / q_pi.abs().mean(dim=1).detach()  # (K,)
        bc_loss = (act_pi - b.act).pow(2).mean(dim=(1, 2))
        return -lmbda * q_pi.mean(dim=1) + bc_loss, q_pi, bc_loss, lmbda

    def _variant_stats(
        self, b: Transitions, penalty: torch.Tensor | None, bc: torch.Tensor
    ) -> dict[str, torch.Tensor | None]:
        return {"bc_loss": bc}

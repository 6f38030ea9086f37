"""Behaviour cloning (:class:`~tianshou_offline.algorithms.continuous.il.ImitationLearning`)
for K seeds at once: the plain regression or maximum-likelihood loss, averaged per seed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.il import ImitationLearning, ImitationTrainingStats
from tianshou_offline.algorithms.continuous.policies import GaussianPolicy, gaussian_log_prob
from tianshou_offline.algorithms.seeds.core import SeedBatch, SeedBatchStats

__all__ = ["SeedImitationLearning"]


class SeedImitationLearning(SeedBatch[ImitationLearning[Any], Transitions, ImitationTrainingStats]):
    """K seeds of continuous :class:`ImitationLearning`.

    :param members: K ``ImitationLearning`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = ImitationLearning

    def __init__(
        self,
        members: Sequence[ImitationLearning[Any]],
        rng_states: Sequence[torch.Tensor] | None = None,
    ) -> None:
        super().__init__(members, rng_states)
        policy = members[0].policy
        self.gaussian = isinstance(policy, GaussianPolicy)
        self.squash = bool(getattr(policy, "squash", False))
        self.actor = self._stack([m.policy.actor for m in members])
        self.optim = self._mirror_optimizer("optim")

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[ImitationTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)
        log_prob: torch.Tensor | None = None
        std: torch.Tensor | None = None
        if self.gaussian:
            mean, log_std = self.actor(b.obs)
            log_prob = gaussian_log_prob(mean, log_std, b.act, squash=self.squash)  # (K, B)
            loss = -log_prob.mean(dim=1)  # negative log-likelihood
            act_pred = torch.tanh(mean) if self.squash else mean
            std = log_std.exp().mean(dim=(1, 2))
        else:
            act_pred = self.actor(b.obs)
            loss = (act_pred - b.act).pow(2).mean(dim=(1, 2))  # regression
        self.optim.step(loss.sum())

        mse = (act_pred.detach() - b.act).pow(2).mean(dim=(1, 2))
        return self._seed_stats(
            {
                "loss": loss,
                "mse": mse,
                "log_prob": None if log_prob is None else log_prob.mean(dim=1),
                "policy_std": std,
            }
        )

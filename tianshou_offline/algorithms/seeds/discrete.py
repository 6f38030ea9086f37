"""The discrete MLP algorithms for K seeds at once: behaviour cloning
(:class:`~tianshou_offline.algorithms.discrete.il.DiscreteImitationLearning`), discrete BCQ,
discrete CQL (on QR-DQN, any number of quantiles) and discrete CRR.

Each update is its plain algorithm's (see those modules for the papers' equations) with a
leading seed dimension: the mini-batch fields are ``(K, B, …)``, the dataset actions pick
their values with ``gather`` along the last dimension (the plain updates index ``q[rows,
act]``: the same numbers), every mean is over the batch only, and the target networks are
copied every ``target_update_freq`` steps as in the plain update (all seeds step together).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from tianshou_offline.algorithms.continuous.crr import crr_weights
from tianshou_offline.algorithms.discrete.bcq import DiscreteBCQ, DiscreteBCQTrainingStats
from tianshou_offline.algorithms.discrete.cql import (
    DiscreteCQL,
    DiscreteCQLTrainingStats,
    quantile_huber_loss,
)
from tianshou_offline.algorithms.discrete.crr import DiscreteCRR, DiscreteCRRTrainingStats
from tianshou_offline.algorithms.discrete.dataset import DiscreteTransitions
from tianshou_offline.algorithms.discrete.il import (
    DiscreteImitationLearning,
    DiscreteImitationTrainingStats,
)
from tianshou_offline.algorithms.discrete.policies import allowed_actions, constrained_argmax
from tianshou_offline.algorithms.seeds.core import SeedBatch, SeedBatchStats

__all__ = ["SeedDiscreteBCQ", "SeedDiscreteCQL", "SeedDiscreteCRR", "SeedDiscreteImitation"]


def pick(values: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """``values[k, b, act[k, b]]``: ``(K, B, A)`` → ``(K, B)``; ``(K, B, A, N)`` → ``(K, B, N)``."""
    index = act.view(*act.shape, *([1] * (values.dim() - act.dim())))
    index = index.expand(*act.shape, 1, *values.shape[act.dim() + 1 :])
    return values.gather(act.dim(), index).squeeze(act.dim())


class SeedDiscreteImitation(
    SeedBatch[DiscreteImitationLearning[Any], DiscreteTransitions, DiscreteImitationTrainingStats]
):
    """K seeds of :class:`DiscreteImitationLearning` (cross-entropy per seed).

    :param members: K ``DiscreteImitationLearning`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = DiscreteImitationLearning

    def __init__(
        self,
        members: Sequence[DiscreteImitationLearning[Any]],
        rng_states: Sequence[torch.Tensor] | None = None,
    ) -> None:
        super().__init__(members, rng_states)
        if members[0].policy.logits_index is not None:
            raise NotImplementedError(
                "SeedDiscreteImitation: an actor with several outputs (logits_index) is not "
                "seed-batched"
            )
        self.actor = self._stack([m.policy.actor for m in members])
        self.optim = self._mirror_optimizer("optim")

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[DiscreteImitationTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)
        logits = self.actor(b.obs)  # (K, B, A)
        log_probs = torch.log_softmax(logits, dim=-1)
        loss = -pick(log_probs, b.act).mean(dim=1)  # the cross-entropy, per seed
        self.optim.step(loss.sum())

        logits_d, log_probs_d = logits.detach(), log_probs.detach()
        return self._seed_stats(
            {
                "loss": loss,
                "accuracy": (logits_d.argmax(dim=-1) == b.act).float().mean(dim=1),
                "entropy": -(log_probs_d.exp() * log_probs_d).sum(dim=-1).mean(dim=1),
            }
        )


class SeedDiscreteBCQ(SeedBatch[DiscreteBCQ[Any], DiscreteTransitions, DiscreteBCQTrainingStats]):
    """K seeds of :class:`DiscreteBCQ`.

    :param members: K ``DiscreteBCQ`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = DiscreteBCQ

    def __init__(
        self, members: Sequence[DiscreteBCQ[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(members, rng_states)
        first = members[0]
        self.model = self._stack([m.model for m in members])
        self.model_target = self._stack_target(self.model, [m.model_target for m in members])
        self.optim = self._mirror_optimizer("optim")
        self.target_update_freq = first.target_update_freq
        self.imitation_logits_penalty = first.imitation_logits_penalty
        self.huber_delta = first.huber_delta
        self.log_threshold = first.policy.log_threshold

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[DiscreteBCQTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)
        if self.num_updates % self.target_update_freq == 0:
            self._copy_targets()

        # 1. target: the best allowed action at s' (online), valued by the target network
        with torch.no_grad():
            q_next, logits_next = self.model(b.obs_next)  # (K, B, A) each
            allowed_next = allowed_actions(logits_next, self.log_threshold)
            act_next = constrained_argmax(q_next, allowed_next)  # (K, B)
            q_next_target, _ = self.model_target(b.obs_next)
            target = b.rew + b.discount * pick(q_next_target, act_next)

        # 2.-3. Q loss and imitation loss from one evaluation of the network at s
        q, logits = self.model(b.obs)
        q_data = pick(q, b.act)
        q_loss = F.huber_loss(q_data, target, delta=self.huber_delta, reduction="none").mean(1)
        i_loss = -pick(torch.log_softmax(logits, dim=-1), b.act).mean(dim=1)
        reg_loss = logits.pow(2).mean(dim=(1, 2))
        loss = q_loss + i_loss + self.imitation_logits_penalty * reg_loss
        self.optim.step(loss.sum())

        return self._seed_stats(
            {
                "loss": loss,
                "q_loss": q_loss,
                "i_loss": i_loss,
                "reg_loss": reg_loss,
                "q_data": q_data.mean(dim=1),
                "q_target": target.mean(dim=1),
                "allowed_fraction": allowed_next.float().mean(dim=(1, 2)),
                "imitation_accuracy": (logits.detach().argmax(dim=-1) == b.act).float().mean(dim=1),
            }
        )


class SeedDiscreteCQL(SeedBatch[DiscreteCQL[Any], DiscreteTransitions, DiscreteCQLTrainingStats]):
    """K seeds of :class:`DiscreteCQL` (QR-DQN with N quantiles; N = 1 included).

    :param members: K ``DiscreteCQL`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = DiscreteCQL

    def __init__(
        self, members: Sequence[DiscreteCQL[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(members, rng_states)
        first = members[0]
        self.model = self._stack([m.model for m in members])
        self.model_target = (
            self._stack_target(self.model, [cast(nn.Module, m.model_target) for m in members])
            if first.model_target is not None
            else None
        )
        self.optim = self._mirror_optimizer("optim")
        self.target_update_freq = first.target_update_freq
        self.min_q_weight, self.kappa, self.double_q = (
            first.min_q_weight,
            first.kappa,
            first.double_q,
        )
        self.register_buffer("tau_hat", first.tau_hat.clone(), persistent=False)
        self.tau_hat: torch.Tensor

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[DiscreteCQLTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)
        target_net = self._target_for_step(self.model, self.model_target, self.target_update_freq)
        k, n = b.act.shape

        # 1. distributional target (QR-DQN, Algorithm 1)
        with torch.no_grad():
            next_dist = target_net(b.obs_next)  # (K, B, A, N)
            select = self.model(b.obs_next) if self.double_q else next_dist
            next_act = select.mean(dim=3).argmax(dim=2)  # (K, B)
            target = b.rew.unsqueeze(2) + b.discount.unsqueeze(2) * pick(next_dist, next_act)

        # 2. quantile regression loss on the dataset actions (the K·B samples as one batch)
        quantiles = self.model(b.obs)  # (K, B, A, N)
        current = pick(quantiles, b.act)  # (K, B, N)
        num_q = current.shape[-1]
        qr_per_sample = quantile_huber_loss(
            current.reshape(k * n, num_q), target.reshape(k * n, num_q), self.tau_hat, self.kappa
        ).view(k, n)
        qr_loss = qr_per_sample.mean(dim=1)

        # 3. CQL(H): log-sum-exp over actions minus the dataset action's value
        q = quantiles.mean(dim=3)  # (K, B, A)
        logsumexp = torch.logsumexp(q, dim=2)
        q_data = pick(q, b.act)
        cql_loss = (logsumexp - q_data).mean(dim=1)

        # 4. one step on the total loss
        loss = qr_loss + self.min_q_weight * cql_loss
        self.optim.step(loss.sum())

        return self._seed_stats(
            {
                "loss": loss,
                "qr_loss": qr_loss,
                "cql_loss": cql_loss,
                "q_data": q_data.mean(dim=1),
                "q_logsumexp": logsumexp.mean(dim=1),
                "q_target": target.mean(dim=(1, 2)),
            }
        )


class SeedDiscreteCRR(SeedBatch[DiscreteCRR[Any], DiscreteTransitions, DiscreteCRRTrainingStats]):
    """K seeds of :class:`DiscreteCRR`.

    :param members: K ``DiscreteCRR`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = DiscreteCRR

    def __init__(
        self, members: Sequence[DiscreteCRR[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(members, rng_states)
        first = members[0]
        self.net = self._stack([m.net for m in members])
        self.net_target = (
            self._stack_target(self.net, [cast(nn.Module, m.net_target) for m in members])
            if first.net_target is not None
            else None
        )
        self.optim = self._mirror_optimizer("optim")
        self.target_update_freq = first.target_update_freq
        self.policy_improvement_mode = first.policy_improvement_mode
        self.ratio_upper_bound, self.beta = first.ratio_upper_bound, first.beta
        self.advantage, self.min_q_weight = first.advantage, first.min_q_weight

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[DiscreteCRRTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)
        target_net = self._target_for_step(self.net, self.net_target, self.target_update_freq)

        # 1. critic target: expected Q' under the target policy at s'
        with torch.no_grad():
            logits_next, q_next = target_net(b.obs_next)  # (K, B, A) each
            v_next = (torch.softmax(logits_next, dim=-1) * q_next).sum(dim=-1)
            target = b.rew + b.discount * v_next  # (K, B)

        logits, q = self.net(b.obs)
        q_data = pick(q, b.act)
        critic_loss = 0.5 * (q_data - target).pow(2).mean(dim=1)

        # 2. advantage of the dataset action (a weight: no gradient)
        log_probs = torch.log_softmax(logits, dim=-1)
        with torch.no_grad():
            probs = log_probs.exp()
            q_d = q.detach()
            baseline = (
                (probs * q_d).sum(dim=-1) if self.advantage == "mean" else q_d.max(dim=-1).values
            )
            adv = pick(q_d, b.act) - baseline
            weight = crr_weights(
                adv, self.policy_improvement_mode, self.beta, self.ratio_upper_bound
            )

        # 3. actor: weighted log-likelihood of the dataset actions
        actor_loss = -(weight * pick(log_probs, b.act)).mean(dim=1)

        # 4. optional CQL(H) regulariser on the critic head
        cql_loss = (torch.logsumexp(q, dim=-1) - q_data).mean(dim=1)
        loss = actor_loss + critic_loss
        if self.min_q_weight > 0:
            loss = loss + self.min_q_weight * cql_loss
        self.optim.step(loss.sum())

        return self._seed_stats(
            {
                "loss": loss,
                "actor_loss": actor_loss,
                "critic_loss": critic_loss,
                "cql_loss": cql_loss,
                "advantage": adv.mean(dim=1),
                "weight": weight.mean(dim=1),
                "q_data": q_data.mean(dim=1),
                "q_target": target.mean(dim=1),
                "entropy": -(probs * log_probs.detach()).sum(dim=-1).mean(dim=1),
            }
        )

"""SAC-N, EDAC and LB-SAC (:mod:`~tianshou_offline.algorithms.continuous.sac_n`,
:mod:`~tianshou_offline.algorithms.continuous.edac`,
:mod:`~tianshou_offline.algorithms.continuous.lb_sac`) for K seeds at once.

The plain update with a leading seed dimension: the temperature is a ``(K,)`` parameter, the
actor's and the next state's samples are drawn per seed in the plain update's order, and the
members' TD losses are summed (LB-SAC: averaged) per seed. EDAC's ensemble-gradient term
needs each member's ``∇_a Q_j(s, a)`` with a graph: the K seeds' N critics are evaluated as
one ensemble of K·N members (the stacked weights viewed as ``(K·N, …)``, the same layers the
plain ensemble runs) on per-member copies of the action, and one ``autograd.grad`` gives
every seed's and member's gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.edac import EDAC, ensemble_similarity
from tianshou_offline.algorithms.continuous.lb_sac import LBSAC
from tianshou_offline.algorithms.continuous.nets import CriticEnsemble
from tianshou_offline.algorithms.continuous.policies import gaussian_sample
from tianshou_offline.algorithms.continuous.sac_n import SACN, SACNTrainingStats, soft_actor_losses
from tianshou_offline.algorithms.core import OfflineAlgorithmCore, joint_step
from tianshou_offline.algorithms.seeds.core import SeedBatch, SeedBatchStats, seed_sum

__all__ = ["SeedEDAC", "SeedLBSAC", "SeedSACN"]


class SeedSACN(SeedBatch[SACN[Any], Transitions, SACNTrainingStats]):
    """K seeds of :class:`SACN` (see :mod:`tianshou_offline.algorithms.seeds.core`).

    :param members: K ``SACN`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type: type[OfflineAlgorithmCore[Any, Any, Any, Any]] = SACN
    _member_reduction: Literal["sum", "mean"] = "sum"

    def __init__(
        self, members: Sequence[SACN[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(members, rng_states)
        first = members[0]
        self.actor = self._stack([m.policy.actor for m in members])
        self.critics = self._stack([m.critics for m in members])
        self.critics_target = self._stack_target(self.critics, [m.critics_target for m in members])
        self.log_alpha = self._stack_parameter([m.log_alpha for m in members])  # (K,)
        self.actor_optim = self._mirror_optimizer("actor_optim")
        self.critic_optim = self._mirror_optimizer("critic_optim")
        self.alpha_optim = self._mirror_optimizer("alpha_optim") if first.auto_alpha else None
        self.tau, self.auto_alpha = first.tau, first.auto_alpha
        self.target_entropy, self.backup_entropy = first.target_entropy, first.backup_entropy

    def _critic_regularizer(self, b: Transitions) -> tuple[torch.Tensor, torch.Tensor] | None:
        """An extra critic loss term per seed, ``(weighted (K,), unweighted (K,))`` or None."""
        return None

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[SACNTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)
        alpha = self.log_alpha.detach().exp()  # (K,)
        size = b.act.shape[1:]

        # 2. actor: reparameterised sample, min over all N critics (parameters not differentiated)
        mean, log_std = self.actor(b.obs)
        act_pi, logp_pi = gaussian_sample(mean, log_std, squash=True, noise=self.rng.randn(size))
        q_pi = self.critics(b.obs, act_pi, detach_params=True)  # (K, N, B)
        q_pi_min = q_pi.min(dim=1).values
        # 3. temperature (and the actor's loss of step 2)
        entropy = self.target_entropy if self.auto_alpha else None  # None: α fixed
        actor_loss, alpha_loss = soft_actor_losses(
            alpha, self.log_alpha, logp_pi, q_pi_min, entropy, per_seed=True
        )

        # 1. critics: the clipped soft target over all N members
        with torch.no_grad():
            mean_n, log_std_n = self.actor(b.obs_next)
            act_next, logp_next = gaussian_sample(
                mean_n, log_std_n, squash=True, noise=self.rng.randn(size)
            )
            q_next = self.critics_target(b.obs_next, act_next).min(dim=1).values  # (K, B)
            if self.backup_entropy:
                q_next = q_next - alpha.unsqueeze(1) * logp_next
            target = b.rew + b.discount * q_next
        q_data = self.critics(b.obs, b.act)  # (K, N, B)
        per_member = (q_data - target.unsqueeze(1)).pow(2).mean(dim=2)
        td_loss = per_member.sum(dim=1) if self._member_reduction == "sum" else per_member.mean(1)
        critic_loss = td_loss
        regularizer = self._critic_regularizer(b)
        if regularizer is not None:
            critic_loss = critic_loss + regularizer[0]

        joint_step(
            critic_loss.sum() + actor_loss.sum(),
            [self.critic_optim, self.actor_optim],
            [(seed_sum(alpha_loss), self.alpha_optim)],
        )
        # 4. targets
        self._update_targets(self.tau)

        q_pi = q_pi.detach()
        return self._seed_stats(
            {
                "actor_loss": actor_loss,
                "critic_loss": critic_loss,
                "td_loss": td_loss,
                "alpha": alpha,
                "alpha_loss": alpha_loss,
                "diversity_loss": None if regularizer is None else regularizer[1],
                "q_data": q_data.mean(dim=(1, 2)),
                "q_policy": q_pi_min.mean(dim=1),
                "q_policy_std": q_pi.std(dim=1).mean(dim=1),
                "q_target": target.mean(dim=1),
                "log_prob": logp_pi.mean(dim=1),
            }
        )


class SeedLBSAC(SeedSACN):
    """K seeds of :class:`LBSAC` (SAC-N at the square-root-scaled learning rate, the
    members' TD losses averaged).

    :param members: K ``LBSAC`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = LBSAC
    _member_reduction = "mean"


class SeedEDAC(SeedSACN):
    """K seeds of :class:`EDAC` (SAC-N plus η × the ensemble-gradient similarity, per seed).

    :param members: K ``EDAC`` of one config (critics without an observation encoder).
    :param rng_states: each seed's generator state.
    """

    member_type = EDAC

    def __init__(
        self, members: Sequence[SACN[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        first: Any = members[0]
        if first.critics.encoder is not None:
            raise NotImplementedError("SeedEDAC: critics with an observation encoder")
        super().__init__(members, rng_states)
        self.eta: float = first.eta

    def _critic_regularizer(self, b: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        """``(η · E[ES(s, a)], E[ES(s, a)])`` per seed at the dataset's ``(s, a)``."""
        critics = self.critics.template
        assert isinstance(critics, CriticEnsemble)
        k, n = self.num_seeds, critics.num_critics
        p = self.critics.named_stacked()

        def flat(prefix: str, count: int) -> list[torch.Tensor]:
            return [p[f"{prefix}.{i}"].flatten(0, 1) for i in range(count)]  # (K·N, …)

        layers = len(critics.weights)
        weights, biases = flat("weights", layers), flat("biases", layers)
        norms = flat("norm_weights", len(critics.norm_weights)) + flat(
            "norm_biases", len(critics.norm_biases)
        )
        batch, act_dim = b.act.shape[1:]
        act = b.act.detach().unsqueeze(1).expand(k, n, batch, act_dim)
        act = act.reshape(k * n, batch, act_dim).clone().requires_grad_(True)  # one per member
        obs = b.obs.unsqueeze(1).expand(k, n, *b.obs.shape[1:]).reshape(k * n, batch, -1)
        x = torch.cat([obs, act], dim=-1)  # (K·N, B, D + A)
        q = critics._rest(torch.baddbmm(biases[0], x, weights[0]), weights, biases, norms)
        (grads,) = torch.autograd.grad(q.sum(), act, create_graph=True)
        es = ensemble_similarity(grads.view(k, n, batch, act_dim)).mean(dim=1)  # (K,)
        return self.eta * es, es

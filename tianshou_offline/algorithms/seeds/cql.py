"""CQL (:class:`~tianshou_offline.algorithms.continuous.cql.CQL`) for K seeds at once.

The plain update (see that module for the paper's equations) with a leading seed dimension:
the temperature and the Lagrange multiplier are ``(K,)`` parameters, every loss reduces over
the batch (and the critic members where the plain update sums them) per seed, and the
actions sampled from the policy and the uniform proposals are drawn per seed, in the plain
update's order. Cal-QL (``calibrated=True``) bounds the policy proposals' values below by
each sampled transition's reference value, as the plain update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tianshou_offline.algorithms.continuous.cql import CQL, CalQLTransitions, CQLTrainingStats
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.policies import gaussian_sample
from tianshou_offline.algorithms.continuous.sac_n import soft_actor_losses
from tianshou_offline.algorithms.core import joint_step
from tianshou_offline.algorithms.seeds.core import SeedBatch, SeedBatchStats, seed_sum

__all__ = ["SeedCQL"]


class SeedCQL(SeedBatch[CQL[Any], Transitions, CQLTrainingStats]):
    """K seeds of :class:`CQL` (see :mod:`tianshou_offline.algorithms.seeds.core`).

    :param members: K ``CQL`` of one config (Cal-QL's included).
    :param rng_states: each seed's generator state.
    """

    member_type = CQL

    def __init__(
        self, members: Sequence[CQL[Any]], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        first = members[0]
        super().__init__(members, rng_states)
        self.calibrated: bool = first.calibrated
        self.actor = self._stack([m.policy.actor for m in members])
        self.critics = self._stack([m.critics for m in members])
        self.critics_target = self._stack_target(self.critics, [m.critics_target for m in members])
        self.log_alpha = self._stack_parameter([m.log_alpha for m in members])  # (K,)
        self.log_cql_alpha = self._stack_parameter([m.log_cql_alpha for m in members])  # (K,)
        self.actor_optim = self._mirror_optimizer("actor_optim")
        self.critic_optim = self._mirror_optimizer("critic_optim")
        self.alpha_optim = self._mirror_optimizer("alpha_optim") if first.auto_alpha else None
        self.cql_alpha_optim = (
            self._mirror_optimizer("cql_alpha_optim") if first.with_lagrange else None
        )
        self.tau: float = first.tau
        self.num_sampled_actions: int = first.num_sampled_actions
        self.temperature: float = first.temperature
        self.auto_alpha: bool = first.auto_alpha
        self.target_entropy: float = first.target_entropy
        self.backup_entropy: bool = first.backup_entropy
        self.with_lagrange: bool = first.with_lagrange
        self.cql_alpha_bounds: tuple[float, float] = first.cql_alpha_bounds
        self.lagrange_form: str = first.lagrange_form
        self.cql_weight: float = first.cql_weight
        self.lagrange_threshold: float = first.lagrange_threshold
        self._random_log_density: float = first._random_log_density

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[CQLTrainingStats]:
        b = self._as_transitions(batch)  # every field (K, B, …)
        n, temp = self.num_sampled_actions, self.temperature
        size = (b.obs.shape[1], n + 1, b.act.shape[-1])  # (B, N + 1, A) per seed
        alpha = self.log_alpha.detach().exp()  # (K,)

        # 3. actor: N + 1 samples at s; the first is the reparameterised actor-loss sample
        mean, log_std = self.actor(b.obs)
        act_s, logp_s = gaussian_sample(
            mean, log_std, squash=True, num_samples=n + 1, noise=self.rng.randn(size)
        )  # (K, B, N + 1, A), (K, B, N + 1)
        act_pi, logp_pi = act_s[:, :, 0], logp_s[:, :, 0]
        q_pi = self.critics(b.obs, act_pi, detach_params=True).min(dim=1).values  # (K, B)
        # 4. temperature (and the actor's loss of step 3)
        entropy = self.target_entropy if self.auto_alpha else None  # None: α fixed
        actor_loss, alpha_loss = soft_actor_losses(
            alpha, self.log_alpha, logp_pi, q_pi, entropy, per_seed=True
        )

        # 1. critic: TD target from π(·|s'), CQL proposals
        with torch.no_grad():
            mean_n, log_std_n = self.actor(b.obs_next)
            act_n, logp_n = gaussian_sample(
                mean_n, log_std_n, squash=True, num_samples=n + 1, noise=self.rng.randn(size)
            )
            q_next = self.critics_target(b.obs_next, act_n[:, :, 0]).min(dim=1).values
            if self.backup_entropy:
                q_next = q_next - alpha.unsqueeze(1) * logp_n[:, :, 0]
            target = b.rew + b.discount * q_next  # (K, B)
            act_rand = self.rng.rand((*act_n.shape[1:2], n, *act_n.shape[3:])) * 2.0 - 1.0
            proposals = torch.cat([act_rand, act_s[:, :, 1:].detach(), act_n[:, :, 1:]], dim=2)
            log_density = torch.cat(
                [
                    torch.full_like(logp_n[:, :, 1:], self._random_log_density),
                    logp_s[:, :, 1:].detach(),
                    logp_n[:, :, 1:],
                ],
                dim=2,
            )  # (K, B, 3N)
        acts = torch.cat([b.act.unsqueeze(2), proposals], dim=2)  # (K, B, 1 + 3N, A)
        q_all = self.critics(b.obs, acts)  # (K, E, B, 1 + 3N)
        q_data, q_prop = q_all[..., 0], q_all[..., 1:]
        td_loss = (q_data - target.unsqueeze(1)).pow(2).mean(dim=2).sum(dim=1)  # (K,)
        q_pushed = q_prop
        if self.calibrated:
            # 6. Cal-QL: max(Q(s, a_π), V^μ(s)) for the policy proposals (not the uniform ones)
            if not isinstance(b, CalQLTransitions):
                raise ValueError("CQL(calibrated=True) needs CalQLTransitions (mc_return)")
            bound = b.mc_return.view(b.mc_return.shape[0], 1, -1, 1)  # (K, 1, B, 1)
            q_pushed = torch.cat([q_prop[..., :n], torch.maximum(q_prop[..., n:], bound)], -1)
        scaled = (q_pushed - log_density.unsqueeze(1)) / temp
        logsumexp = temp * torch.logsumexp(scaled, dim=-1)  # (K, E, B)
        gap = (logsumexp - q_data).mean(dim=2)  # (K, E)
        # 2. Lagrange multiplier
        cql_alpha_loss: torch.Tensor | None = None
        cql_alpha: torch.Tensor | None = None
        if self.with_lagrange:
            low, high = self.cql_alpha_bounds
            cql_alpha = self.log_cql_alpha.exp().clamp(low, high)  # (K,)
            if self.lagrange_form == "calql":
                excess = self.cql_weight * (gap - self.lagrange_threshold)
            else:
                excess = self.cql_weight * gap - self.lagrange_threshold
            penalty = cql_alpha.detach().unsqueeze(1) * excess
            cql_alpha_loss = -(cql_alpha.unsqueeze(1) * excess.detach()).mean(dim=1)
        else:
            penalty = self.cql_weight * gap
        critic_loss = td_loss + penalty.sum(dim=1)  # (K,)

        # one backward for all losses (disjoint parameters), then every optimizer steps
        joint_step(
            critic_loss.sum() + actor_loss.sum(),
            [self.critic_optim, self.actor_optim],
            [
                (seed_sum(alpha_loss), self.alpha_optim),
                (seed_sum(cql_alpha_loss), self.cql_alpha_optim),
            ],
        )
        # 5. targets
        self._update_targets(self.tau)

        q_random, q_policy, _ = q_prop.detach().split(n, dim=-1)
        return self._seed_stats(
            {
                "actor_loss": actor_loss,
                "critic_loss": critic_loss,
                "td_loss": td_loss,
                "cql_loss": gap.mean(dim=1),
                "alpha": alpha,
                "alpha_loss": alpha_loss,
                "cql_alpha": cql_alpha,
                "cql_alpha_loss": cql_alpha_loss,
                "q_data": q_data.mean(dim=(1, 2)),
                "q_policy": q_policy.mean(dim=(1, 2, 3)),
                "q_random": q_random.mean(dim=(1, 2, 3)),
                "q_target": target.mean(dim=1),
                "log_prob": logp_pi.mean(dim=1),
            }
        )

"""CQL: conservative Q-learning on top of SAC, for continuous actions.

Reference: Kumar, Zhou, Tucker & Levine (2020), "Conservative Q-Learning for Offline
Reinforcement Learning", NeurIPS, arXiv:2006.04779; SAC from Haarnoja et al. (2018),
arXiv:1812.05905.

One gradient step computes every loss from the same parameters and applies one backward
pass (as the authors' implementation does, which computes all losses before stepping):

1. **Critic** — the CQL(H) objective (Kumar et al. 2020, Eq. 4: CQL(R) of Eq. 3 with the
   entropy regulariser), for every ensemble member ``j``::

       gap_j = E_{s~D}[ T log Σ_a exp(Q_j(s, a) / T) − E_{a~D} Q_j(s, a) ]
       L_j   = w · gap_j + E_{(s,a)~D} (Q_j(s, a) − y)²

   (the authors' code drops the ½ of the TD term). ``log Σ_a exp`` is estimated by
   importance sampling (Appendix F) from N uniform actions and N actions from each of
   ``π(·|s)`` and ``π(·|s')``, each Q-value corrected by the log-density it was drawn with.
   ``y`` is the SAC backup ``r + γ (1 − d)(min_j Q'_j(s', a') − [α log π(a'|s')])``,
   ``a' ~ π(·|s')``, with the entropy term only when ``backup_entropy=True``; ``d`` is
   termination only (truncation bootstraps).
2. **Lagrange variant** (Appendix F): ``min_Q max_{α'≥0} α' (w·gap_j − τ) + TD``; α' follows
   gradient ascent on that term (``with_lagrange=True``, τ = ``lagrange_threshold``). Two forms
   of the term are in use (``lagrange_form``): ``"cql"`` (the default) is ``α' (w·gap_j − τ)``,
   Kumar et al.'s code, whose gap settles near ``τ / w``; ``"calql"`` is ``α'·w·(gap_j − τ)``,
   the Cal-QL authors' code and CORL, whose gap settles near ``τ``. Cal-QL's AntMaze settings
   (w = 5, τ = 0.8) are written for ``"calql"``: under ``"cql"`` they target a gap of 0.16.
3. **Actor** — SAC's reparameterised policy loss (Haarnoja et al. 2018a, arXiv:1801.01290,
   Eq. 12; tanh correction Eq. 21): ``L_π = E_s[α log π(ã|s) − min_j Q_j(s, ã)]``; the critic
   parameters are not differentiated.
4. **Temperature** (Haarnoja et al. 2018b, arXiv:1812.05905, Eq. 18):
   ``L_α = −E[log α · (log π(ã|s) + H̄)]`` with target entropy ``H̄ = −A`` (``alpha="auto"``).
5. **Targets**: Polyak averaging of the critic ensemble.
6. **Cal-QL** (``calibrated=True``; Nakamoto, Zhai, Singh, Mark, Ma, Finn, Kumar & Levine
   (2023), "Cal-QL: Calibrated Offline RL Pre-Training for Efficient Online Fine-Tuning",
   NeurIPS, arXiv:2303.05479, Sec. 5, the Cal-QL objective): the push-down term uses
   ``max(Q_j(s, a_π), V^μ(s))`` instead of ``Q_j(s, a_π)`` for the policy's proposals (those
   from π(·|s) and π(·|s')), where the reference value ``V^μ(s)`` is the Monte-Carlo
   discounted return-to-go of the behaviour policy from the transition,
   ``Σ_{k≥0} γ^k r_{t+k}`` over the rest of its episode in the data
   (:func:`~tianshou_offline.algorithms.core.return_to_go`)::

       gap_j = E_{s~D}[ T log Σ_a exp(Q̃_j(s, a) / T) − E_{a~D} Q_j(s, a) ],
       Q̃_j(s, a) = max(Q_j(s, a), V^μ(s)) for a ~ π,   Q̃_j = Q_j for the uniform proposals

   so the critic is not pushed below the behaviour policy's value: its Q-values stay on the
   scale of true returns, which is what makes online fine-tuning start without the "unlearning
   dip". As in the authors' code the bound is applied before the importance-sampling
   correction, to the policy proposals only, and ``max`` passes no gradient where the bound
   wins. ``V^μ`` follows the authors' ``calc_return_to_go``
   (:func:`calql_reference_values`):

   - a time-limit-truncated episode sums the rewards it holds (``mc_truncated="partial"``,
     the default, as CORL and the authors' D4RL runs), or adds the tail ``γ^k r_T / (1 − γ)``
     of its last reward repeated forever (``"last_reward"``, the authors' ``infinite_horizon``
     for Kitchen) — with a negative per-step reward the partial sum lies far above the true
     value near the end of the episode;
   - sparse rewards (``mc_failure_reward=r_f``, e.g. AntMaze's 0 or −1, Adroit-binary's −1):
     every step of an episode whose rewards all equal ``r_f`` (it never succeeds) gets
     ``r_f / (1 − γ)`` (the authors' and CORL's ``is_sparse_reward``);
   - an *unfinished* episode (no termination or truncation at its last stored step: an online
     episode still being collected, a cut file) has no return yet: its rows get no bound
     (``V^μ = −∞``, plain CQL), as the authors add online data to the buffer only as whole
     trajectories. Online transitions (fine-tuning) get ``V^μ`` from the online buffer the
     same way, once their episode has ended.

Two deliberate differences from Tianshou 2.0.1's CQL: uniform proposals really are uniform on
``[−1, 1]^A`` (Tianshou draws ``uniform_(−min_action, max_action)``, i.e. all ones with the
default bounds), and time-limit truncations bootstrap (Tianshou uses ``done``).

Speed: the actor network runs once on ``s`` and once on ``s'`` (all N + 1 samples per state
come from those two evaluations, not from N copies of each state); the critic ensemble runs
once over ``(s, [a, a_rand, a_π(s), a_π(s')])`` — ``B·(1 + 3N)`` actions — with observations
broadcast, not copied. Samples used by the CQL term are detached from the actor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from torch import nn
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import ContinuousTDConfig, adam, box_dims
from tianshou_offline.algorithms.continuous.base import OfflineAlgorithmBase
from tianshou_offline.algorithms.continuous.dataset import Transitions, extended, preprocessed
from tianshou_offline.algorithms.continuous.nets import CriticEnsemble, GaussianActor
from tianshou_offline.algorithms.continuous.policies import GaussianPolicy, gaussian_sample
from tianshou_offline.algorithms.continuous.sac_n import soft_actor_losses
from tianshou_offline.algorithms.continuous.streaming import StreamingTransitionDataset
from tianshou_offline.algorithms.core import (
    GradientStep,
    OfflineDataset,
    episode_ends,
    joint_step,
    return_to_go,
)
from tianshou_offline.algorithms.deferred import OfflineTrainingStats

if TYPE_CHECKING:
    import gymnasium as gym


def calql_reference_values(
    buffer: ReplayBuffer,
    gamma: float,
    *,
    failure_reward: float | None = None,
    truncated: Literal["partial", "last_reward"] = "partial",
) -> np.ndarray:
    """Cal-QL's reference value ``V^μ(s_t)`` of every stored transition: the behaviour
    policy's Monte-Carlo discounted return-to-go, as the authors' ``calc_return_to_go``
    (Nakamoto et al. 2023; module docstring, item 6).

    - ``G_t = Σ_{k≥0} γ^k r_{t+k}`` to the end of the episode
      (:func:`~tianshou_offline.algorithms.core.return_to_go`);
    - a truncated episode (time limit) with ``truncated="last_reward"``: plus
      ``γ^{T−t+1} r_T / (1 − γ)``, its last reward ``r_T`` repeated forever;
    - with ``failure_reward`` set (sparse rewards): ``failure_reward / (1 − γ)`` on every step
      of an episode whose rewards all equal it (an episode that never succeeds);
    - ``−∞`` (no bound) on every step of an unfinished episode (its last stored step is
      neither terminated nor truncated).

    :returns: ``(buffer.maxsize,)`` float64 indexed by storage row (rows not in use: 0).
    """
    values = return_to_go(buffer, gamma)
    rows = np.asarray(buffer.sample_indices(0), dtype=np.int64)
    if len(rows) == 0:
        return values
    end, steps = episode_ends(buffer)
    last = end[rows]
    rew = np.asarray(buffer.rew, dtype=np.float64)
    done = np.asarray(buffer.done, dtype=bool)
    terminated = np.asarray(buffer.terminated, dtype=bool)
    v = values[rows]
    if truncated == "last_reward":
        cut = done[last] & ~terminated[last]
        tail = gamma ** (steps[rows] + 1.0) * rew[last] / (1.0 - gamma)
        v = np.where(cut, v + tail, v)
    if failure_reward is not None:
        succeeded = np.zeros(len(rew), dtype=bool)
        np.logical_or.at(succeeded, last, rew[rows] != failure_reward)
        v = np.where(succeeded[last], v, failure_reward / (1.0 - gamma))
    values[rows] = np.where(done[last], v, -np.inf)
    return values


@dataclass(frozen=True, slots=True)
class CalQLTransitions(Transitions):
    """:class:`Transitions` with Cal-QL's reference value.

    :ivar mc_return: ``(B,)`` Cal-QL's ``V^μ``: the behaviour policy's Monte-Carlo
        return-to-go from the transition (:func:`calql_reference_values`; ``−∞``: no bound).
    """

    mc_return: torch.Tensor


@dataclass(frozen=True, kw_only=True)
class CQLConfig(ContinuousTDConfig):
    """CQL(H)'s hyperparameters (Kumar et al. 2020, Appendix F; the authors' MuJoCo runs):
    SAC with a learned temperature, Adam 1e-4 (actor) and 3e-4 (critics), w = 5, N = 10."""

    name: ClassVar[str] = "cql"
    conv_encoder: ClassVar[bool] = True

    actor_lr: float = 1e-4
    """Adam learning rate of the actor"""
    alpha_lr: float = 3e-4
    """Adam learning rate of the entropy temperature ``log α``"""
    auto_alpha: bool = True
    """learn the entropy temperature toward ``target_entropy`` (SAC's Eq. 18)"""
    alpha: float = 0.2
    """the fixed entropy temperature when ``auto_alpha`` is off"""
    init_alpha: float = 1.0
    """the learned temperature's initial value"""
    target_entropy: float | None = None
    """H̄ of the learned temperature (None: −action size)"""
    cql_weight: float = 5.0
    """w, the weight of the conservative term (α in the CQL paper)"""
    temperature: float = 1.0
    """T of the conservative term's log-sum-exp"""
    num_sampled_actions: int = 10
    """N, actions per state from each of the three proposals of the conservative term"""
    with_lagrange: bool = False
    """learn a multiplier α' that keeps the conservative gap near ``lagrange_threshold``"""
    lagrange_threshold: float = 10.0
    """τ of the Lagrange variant"""
    lagrange_form: Literal["cql", "calql"] = "cql"
    """the Lagrange variant's form: ``α' (w·gap − τ)`` (Kumar et al.'s code) or
    ``α'·w·(gap − τ)`` (the Cal-QL authors' code and CORL)"""
    cql_alpha_lr: float = 3e-4
    """Adam learning rate of ``log α'`` (``with_lagrange``)"""
    cql_alpha_bounds: tuple[float, float] = (0.0, 1e6)
    """clamp of α'"""
    backup_entropy: bool = False
    """subtract ``α log π(a'|s')`` in the TD target (the soft backup)"""
    calibrated: bool = False
    """Cal-QL (Nakamoto et al. 2023): bound the policy proposals' Q-values in the
    conservative term below by the data's return-to-go"""
    mc_failure_reward: float | None = None
    """Cal-QL with sparse rewards: the reward of every step that does not succeed (an
    episode of only such rewards gets ``r / (1 − γ)`` as ``V^μ``; None: dense rewards)"""
    mc_truncated: Literal["partial", "last_reward"] = "partial"
    """``V^μ`` of a time-limit-truncated episode: the rewards it holds, or its last reward
    forever added (``γ^k r_T / (1 − γ)``)"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> CQL:
        """A :class:`CQL` of a tanh-squashed :class:`GaussianActor` and critics."""
        _, a = box_dims(observation_space, action_space)
        d, encoder = self.network_input(observation_space)
        policy = GaussianPolicy(
            actor=GaussianActor(d, a, self.hidden_sizes, encoder=encoder()),
            action_space=action_space,
            observation_space=observation_space,
            normalize_obs=self.normalize_obs,
        )
        algorithm: CQL = CQL(
            policy=policy,
            policy_optim=adam(self.actor_lr),
            critics=CriticEnsemble(
                d, a, self.hidden_sizes, num_critics=self.num_critics, encoder=encoder()
            ),
            critic_optim=adam(self.critic_lr),
            tau=self.tau,
            gamma=self.gamma,
            alpha="auto" if self.auto_alpha else self.alpha,
            alpha_optim=adam(self.alpha_lr),
            init_alpha=self.init_alpha,
            target_entropy=self.target_entropy,
            cql_weight=self.cql_weight,
            temperature=self.temperature,
            num_sampled_actions=self.num_sampled_actions,
            with_lagrange=self.with_lagrange,
            lagrange_threshold=self.lagrange_threshold,
            lagrange_form=self.lagrange_form,
            cql_alpha_optim=adam(self.cql_alpha_lr),
            cql_alpha_bounds=self.cql_alpha_bounds,
            backup_entropy=self.backup_entropy,
            calibrated=self.calibrated,
            mc_failure_reward=self.mc_failure_reward,
            mc_truncated=self.mc_truncated,
            n_step_return_horizon=self.n_step_return_horizon,
            max_grad_norm=self.max_grad_norm,
        )
        return self.place(algorithm, device)


@dataclass(kw_only=True)
class CQLTrainingStats(OfflineTrainingStats):
    """Statistics of one CQL step."""

    actor_loss: float
    """SAC actor loss ``E[α log π − min_j Q_j]``."""
    critic_loss: float
    """Total critic loss (TD + weighted CQL term), summed over the ensemble."""
    td_loss: float
    """``Σ_j MSE(Q_j(s, a), y)``."""
    cql_loss: float
    """The conservative gap ``E[T logsumexp(Q/T) − Q(s, a)]``, averaged over the ensemble
    (before the weight ``w`` and the Lagrange multiplier)."""
    alpha: float
    """The entropy temperature α."""
    alpha_loss: float | None = None
    """Temperature loss (``alpha="auto"`` only)."""
    cql_alpha: float | None = None
    """The Lagrange multiplier α' (``with_lagrange`` only)."""
    cql_alpha_loss: float | None = None
    """The multiplier's loss (``with_lagrange`` only)."""
    q_data: float
    """Mean Q of dataset actions."""
    q_policy: float
    """Mean Q of actions sampled from π(·|s) (CQL samples)."""
    q_random: float
    """Mean Q of uniform random actions."""
    q_target: float
    """Mean TD target y."""
    log_prob: float
    """Mean log π(ã|s) of the actor's samples (−entropy)."""


TCQLStats = TypeVar("TCQLStats", bound=CQLTrainingStats, default=CQLTrainingStats)


@dataclass(frozen=True, slots=True)
class CQLStep:
    """Tensors of one step, detached, for :meth:`CQL._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar q_data: ``(E, B)`` Q of the dataset actions.
    :ivar q_random: ``(E, B, N)`` Q of uniform actions.
    :ivar q_policy: ``(E, B, N)`` Q of actions from π(·|s).
    :ivar q_policy_next: ``(E, B, N)`` Q(s, ·) of actions from π(·|s').
    :ivar logsumexp: ``(E, B)`` the importance-sampled ``T log Σ exp(Q/T)``.
    :ivar target: ``(B,)`` TD targets.
    :ivar log_prob: ``(B,)`` log π(ã|s) of the actor-loss samples.
    """

    batch: Transitions
    q_data: torch.Tensor
    q_random: torch.Tensor
    q_policy: torch.Tensor
    q_policy_next: torch.Tensor
    logsumexp: torch.Tensor
    target: torch.Tensor
    log_prob: torch.Tensor


class CQL(OfflineAlgorithmBase[GaussianPolicy, TCQLStats]):
    """CQL(H) with SAC (Kumar et al. 2020); see the module docstring for the equations.

    :param policy: a ``tanh``-squashed :class:`GaussianPolicy` (``squash=True``).
    :param policy_optim: optimizer factory for the actor (authors: Adam, lr 1e-4).
    :param critics: the critic ensemble (2 members).
    :param critic_optim: optimizer factory for the critics (authors: Adam, lr 3e-4).
    :param alpha: a fixed entropy temperature, or ``"auto"`` to learn it (SAC's Eq. 18;
        :attr:`CQLConfig.auto_alpha`).
    :param alpha_optim: optimizer factory for ``log α`` (default: Adam at
        :attr:`CQLConfig.alpha_lr`).
    :param cql_alpha_optim: optimizer factory for ``log α'`` (default: Adam at
        :attr:`CQLConfig.cql_alpha_lr`).
    :param calibrated: Cal-QL (module docstring, item 6); its mini-batches are
        :class:`CalQLTransitions`.
    :param lagrange_form: ``"cql"``: ``α' (w·gap − τ)`` (Kumar et al.'s code); ``"calql"``:
        ``α'·w·(gap − τ)`` (the Cal-QL authors' code and CORL). Module docstring, item 2.

    The other settings default to :class:`CQLConfig`'s fields of the same names (documented
    there).
    """

    def __init__(
        self,
        *,
        policy: GaussianPolicy,
        policy_optim: OptimizerFactory,
        critics: CriticEnsemble,
        critic_optim: OptimizerFactory,
        tau: float = CQLConfig.tau,
        gamma: float = CQLConfig.gamma,
        alpha: float | Literal["auto"] = "auto",
        alpha_optim: OptimizerFactory | None = None,
        init_alpha: float = CQLConfig.init_alpha,
        target_entropy: float | None = CQLConfig.target_entropy,
        cql_weight: float = CQLConfig.cql_weight,
        temperature: float = CQLConfig.temperature,
        num_sampled_actions: int = CQLConfig.num_sampled_actions,
        with_lagrange: bool = CQLConfig.with_lagrange,
        lagrange_threshold: float = CQLConfig.lagrange_threshold,
        lagrange_form: Literal["cql", "calql"] = CQLConfig.lagrange_form,
        cql_alpha_optim: OptimizerFactory | None = None,
        cql_alpha_bounds: tuple[float, float] = CQLConfig.cql_alpha_bounds,
        backup_entropy: bool = CQLConfig.backup_entropy,
        calibrated: bool = CQLConfig.calibrated,
        mc_failure_reward: float | None = CQLConfig.mc_failure_reward,
        mc_truncated: Literal["partial", "last_reward"] = CQLConfig.mc_truncated,
        n_step_return_horizon: int = CQLConfig.n_step_return_horizon,
        max_grad_norm: float | None = CQLConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        self.calibrated = calibrated
        if not policy.squash:
            raise ValueError("CQL needs a tanh-squashed GaussianPolicy (squash=True)")
        if lagrange_form not in ("cql", "calql"):
            raise ValueError(f"CQL: lagrange_form={lagrange_form!r}; expected 'cql' or 'calql'")
        if mc_truncated not in ("partial", "last_reward"):
            raise ValueError(
                f"CQL: mc_truncated={mc_truncated!r}; expected 'partial' or 'last_reward'"
            )
        self.lagrange_form = lagrange_form
        self.mc_failure_reward = mc_failure_reward
        self.mc_truncated = mc_truncated
        self.critics = critics
        self.critics_target = self._add_target(critics)
        self.actor_optim = self._make_optimizer(policy.actor, policy_optim)
        self.critic_optim = self._make_optimizer(critics, critic_optim, max_grad_norm)
        self.tau = tau
        self.gamma = gamma
        self.n_step = n_step_return_horizon
        self.cql_weight = cql_weight
        self.temperature = temperature
        self.num_sampled_actions = num_sampled_actions
        self.with_lagrange = with_lagrange
        self.lagrange_threshold = lagrange_threshold
        self.cql_alpha_bounds = cql_alpha_bounds
        self.backup_entropy = backup_entropy
        self.target_entropy = (
            float(target_entropy) if target_entropy is not None else -float(policy.act_dim)
        )
        device = policy.device
        self.auto_alpha = alpha == "auto"
        start = init_alpha if alpha == "auto" else float(alpha)
        self.log_alpha = nn.Parameter(
            torch.tensor(math.log(start), device=device), requires_grad=self.auto_alpha
        )
        self.alpha_optim: GradientStep | None = None
        if self.auto_alpha:
            self.alpha_optim = self._make_optimizer(
                [self.log_alpha], alpha_optim or adam(CQLConfig.alpha_lr)
            )
        self.log_cql_alpha = nn.Parameter(
            torch.zeros((), device=device), requires_grad=with_lagrange
        )
        self.cql_alpha_optim: GradientStep | None = None
        if with_lagrange:
            self.cql_alpha_optim = self._make_optimizer(
                [self.log_cql_alpha], cql_alpha_optim or adam(CQLConfig.alpha_lr)
            )
        self._random_log_density = -policy.act_dim * math.log(2.0)  # log U(−1, 1)^A

    # ------------------------------------------------------------------ Cal-QL's data

    def _build_dataset(self, buffer: ReplayBuffer) -> OfflineDataset[Transitions]:
        """With ``calibrated``, Cal-QL's reference values ride with every transition: in the
        packed rows on the device, or (streamed from disk) as a table in RAM (4 B per
        transition) gathered with each batch."""
        dataset = self.transition_dataset(buffer)
        if not self.calibrated:
            return dataset
        if isinstance(dataset, StreamingTransitionDataset):
            reference = self.reference_values(buffer)[dataset.storage_rows()]
            return dataset.with_columns(CalQLTransitions, mc_return=reference.astype(np.float32))
        rows = buffer.sample_indices(0)  # the order from_buffer packs the rows in
        mc = torch.as_tensor(self.reference_values(buffer)[rows], dtype=torch.float32)
        return dataset.with_columns(CalQLTransitions, mc_return=mc)

    def _preprocess_batch(
        self, batch: RolloutBatchProtocol, buffer: ReplayBuffer, indices: np.ndarray
    ) -> RolloutBatchProtocol:
        """The core's n-step targets, and with ``calibrated`` the reference value
        ``mc_return`` of each sampled transition (:meth:`reference_values`)."""
        batch = super()._preprocess_batch(batch, buffer, indices)
        if self.calibrated:
            batch.mc_return = self.reference_values(buffer)[np.asarray(indices, dtype=np.int64)]
        return batch

    def reference_values(self, buffer: ReplayBuffer) -> np.ndarray:
        """Cal-QL's ``V^μ`` of every transition of ``buffer`` with this algorithm's settings
        (:func:`calql_reference_values`), ``(buffer.maxsize,)`` by storage row."""
        return calql_reference_values(
            buffer,
            self.gamma,
            failure_reward=self.mc_failure_reward,
            truncated=self.mc_truncated,
        )

    def _as_transitions(self, batch: RolloutBatchProtocol | Transitions) -> Transitions:
        b = super()._as_transitions(batch)
        if isinstance(b, CalQLTransitions) or not self.calibrated:
            return b
        batch = preprocessed(
            batch, "mc_return", "CQL(calibrated=True): this batch holds no return-to-go"
        )
        mc = torch.as_tensor(np.asarray(batch.mc_return, dtype=np.float32), device=b.rew.device)
        return extended(b, CalQLTransitions, mc_return=mc.reshape(-1))

    # ------------------------------------------------------------------ update

    def _update_with_batch(self, batch: RolloutBatchProtocol | Transitions) -> TCQLStats:
        b = self._as_transitions(batch)
        actor = self.policy.actor
        n, temp = self.num_sampled_actions, self.temperature
        alpha = self.log_alpha.detach().exp()

        # 3. actor: N + 1 samples at s; the first is the reparameterised actor-loss sample
        mean, log_std = actor(b.obs)
        act_s, logp_s = gaussian_sample(mean, log_std, squash=True, num_samples=n + 1)
        act_pi, logp_pi = act_s[:, 0], logp_s[:, 0]
        q_pi = self.critics(b.obs, act_pi, detach_params=True).min(dim=0).values  # (B,)
        # 4. temperature (and the actor's loss of step 3)
        entropy = self.target_entropy if self.auto_alpha else None  # None: α fixed
        actor_loss, alpha_loss = soft_actor_losses(alpha, self.log_alpha, logp_pi, q_pi, entropy)

        # 1. critic: TD target from π(·|s'), CQL proposals
        with torch.no_grad():
            mean_n, log_std_n = actor(b.obs_next)
            act_n, logp_n = gaussian_sample(mean_n, log_std_n, squash=True, num_samples=n + 1)
            q_next = self.critics_target(b.obs_next, act_n[:, 0]).min(dim=0).values
            if self.backup_entropy:
                q_next = q_next - alpha * logp_n[:, 0]
            target = b.rew + b.discount * q_next  # (B,)
            act_rand = torch.rand_like(act_n[:, 1:]) * 2.0 - 1.0  # (B, N, A)
            proposals = torch.cat([act_rand, act_s[:, 1:].detach(), act_n[:, 1:]], dim=1)
            log_density = torch.cat(
                [
                    torch.full_like(logp_n[:, 1:], self._random_log_density),
                    logp_s[:, 1:].detach(),
                    logp_n[:, 1:],
                ],
                dim=1,
            )  # (B, 3N)
        acts = torch.cat([b.act.unsqueeze(1), proposals], dim=1)  # (B, 1 + 3N, A)
        q_all = self.critics(b.obs, acts)  # (E, B, 1 + 3N)
        q_data, q_prop = q_all[..., 0], q_all[..., 1:]
        td_loss = (q_data - target).pow(2).mean(dim=1).sum()
        q_pushed = q_prop
        if self.calibrated:
            # 6. Cal-QL: max(Q(s, a_π), V^μ(s)) for the policy proposals (not the uniform ones)
            if not isinstance(b, CalQLTransitions):
                raise ValueError("CQL(calibrated=True) needs CalQLTransitions (mc_return)")
            bound = b.mc_return.view(1, -1, 1)
            q_pushed = torch.cat([q_prop[..., :n], torch.maximum(q_prop[..., n:], bound)], -1)
        logsumexp = temp * torch.logsumexp((q_pushed - log_density) / temp, dim=-1)  # (E, B)
        gap = (logsumexp - q_data).mean(dim=1)  # (E,)
        # 2. Lagrange multiplier
        cql_alpha_loss: torch.Tensor | None = None
        cql_alpha: torch.Tensor | None = None
        if self.with_lagrange:
            low, high = self.cql_alpha_bounds
            cql_alpha = self.log_cql_alpha.exp().clamp(low, high)
            if self.lagrange_form == "calql":  # α'·w·(gap − τ): Cal-QL's code, CORL
                excess = self.cql_weight * (gap - self.lagrange_threshold)
            else:  # α'(w·gap − τ): Kumar et al.'s code
                excess = self.cql_weight * gap - self.lagrange_threshold
            penalty = cql_alpha.detach() * excess
            cql_alpha_loss = -(cql_alpha * excess.detach()).mean()
        else:
            penalty = self.cql_weight * gap
        critic_loss = td_loss + penalty.sum()

        # one backward for all losses (disjoint parameters), then every optimizer steps
        joint_step(
            critic_loss + actor_loss,
            [self.critic_optim, self.actor_optim],
            [(alpha_loss, self.alpha_optim), (cql_alpha_loss, self.cql_alpha_optim)],
        )
        # 5. targets
        self._update_targets(self.tau)

        q_prop = q_prop.detach()
        q_random, q_policy, q_policy_next = q_prop.split(n, dim=-1)
        stats = self._make_stats(
            actor_loss=actor_loss,
            critic_loss=critic_loss,
            td_loss=td_loss,
            cql_loss=gap.mean(),
            alpha=alpha,
            alpha_loss=alpha_loss,
            cql_alpha=cql_alpha,
            cql_alpha_loss=cql_alpha_loss,
            q_data=q_data.mean(),
            q_policy=q_policy.mean(),
            q_random=q_random.mean(),
            q_target=target.mean(),
            log_prob=logp_pi.mean(),
        )
        self._extend_stats(
            stats,
            CQLStep(
                batch=b,
                q_data=q_data.detach(),
                q_random=q_random,
                q_policy=q_policy,
                q_policy_next=q_policy_next,
                logsumexp=logsumexp.detach(),
                target=target,
                log_prob=logp_pi.detach(),
            ),
        )
        return stats

    def _extend_stats(self, stats: TCQLStats, step: CQLStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""

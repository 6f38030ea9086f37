"""Discrete CQL: conservative Q-learning on top of QR-DQN, for discrete actions.

References: Kumar, Zhou, Tucker & Levine (2020), "Conservative Q-Learning for Offline
Reinforcement Learning", NeurIPS, arXiv:2006.04779 — Eq. 4, CQL(H), and Sec. 6 (Atari, where
CQL is built on QR-DQN); Dabney, Rowland, Bellemare & Munos (2018), "Distributional
Reinforcement Learning with Quantile Regression", AAAI, arXiv:1710.10044 — Algorithm 1 and
the quantile Huber loss ρ^κ_τ of Sec. 4 (Eqs. 9–10).

The network outputs N quantiles ``θ_i(s, a)`` per action at the midpoints
``τ̂_i = (2i − 1) / 2N``; ``Q(s, a) = (1/N) Σ_i θ_i(s, a)``. One gradient step:

1. **Distributional target** (QR-DQN, Algorithm 1): ``a* = argmax_a Q'(s', a)`` and
   ``T θ_j = R + γ^m (1 − d) θ'_j(s', a*)`` with the target network ``θ'`` (``double_q=True``
   selects ``a*`` with the online network instead, as Tianshou's QR-DQN does); ``R`` is the
   n-step reward sum. Without a target network (``target_update_freq=0``) ``θ' = θ``.
2. **Quantile regression loss** (Dabney et al. 2018, Eqs. 9–10):
   ``L_QR = E_{(s,a)} (1/N) Σ_i Σ_j ρ^κ_{τ̂_i}(T θ_j − θ_i(s, a))`` with
   ``ρ^κ_τ(u) = |τ − 1{u < 0}| · L_κ(u)``, ``L_κ`` the Huber loss (½u² for ``|u| ≤ κ``,
   ``κ(|u| − ½κ)`` otherwise). Same normalisation as Tianshou's QR-DQN.
3. **Conservative term** (Kumar et al. 2020, Eq. 4, CQL(H) with the exact log-sum-exp over
   the discrete actions): ``L_CQL = E_s[ log Σ_a exp Q(s, a) − Q(s, a_D) ]``.
4. Minimise ``L_QR + w · L_CQL`` (``w = min_q_weight``); the target network is copied from
   the online one every ``target_update_freq`` steps.

**Speed.** The pairwise loss compares every predicted quantile with every target quantile:
N × N = 40,000 Huber terms per sample for N = 200, which dominates Tianshou's update.
:func:`quantile_huber_loss` computes the same value (and gradient) in O(N log N) per sample:
for a fixed ``θ_i`` each target quantile falls in one of four regions (``u < −κ``,
``−κ ≤ u < 0``, ``0 ≤ u ≤ κ``, ``u > κ``) on which ``ρ^κ_τ`` is a polynomial of degree ≤ 2
in ``T θ_j``, so the sum over ``j`` follows from prefix sums of the sorted targets and their
squares, located with ``searchsorted``. The sums are taken in float64 around the targets'
mean, so the result matches the pairwise loss to float32 precision
(:func:`quantile_huber_loss_pairwise` is the reference; the tests compare both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
import torch.nn.functional as F
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data.types import RolloutBatchProtocol
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import (
    DiscreteTDConfig,
    adam,
    discrete_actions,
    param_default,
)
from tianshou_offline.algorithms.deferred import OfflineTrainingStats
from tianshou_offline.algorithms.discrete.base import DiscreteOfflineAlgorithm
from tianshou_offline.algorithms.discrete.dataset import DiscreteTransitions
from tianshou_offline.algorithms.discrete.nets import QuantileQNet
from tianshou_offline.algorithms.discrete.policies import QValuePolicy

if TYPE_CHECKING:
    import gymnasium as gym

__all__ = [
    "DiscreteCQL",
    "DiscreteCQLStep",
    "DiscreteCQLTrainingStats",
    "quantile_huber_loss",
    "quantile_huber_loss_pairwise",
    "quantile_midpoints",
]


def quantile_midpoints(
    num_quantiles: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """``τ̂_i = (2i − 1) / 2N`` for ``i = 1..N``: ``(N,)`` float32."""
    return (torch.arange(num_quantiles, dtype=torch.float32, device=device) + 0.5) / num_quantiles


def quantile_huber_loss_pairwise(
    current: torch.Tensor, target: torch.Tensor, tau: torch.Tensor, kappa: float = 1.0
) -> torch.Tensor:
    """Reference implementation: the quantile Huber loss over all N × M pairs.

    :param current: ``(B, N)`` predicted quantiles ``θ_i`` (differentiable).
    :param target: ``(B, M)`` target quantiles ``T θ_j`` (treated as constants).
    :param tau: ``(N,)`` quantile midpoints of ``current``.
    :param kappa: κ of the Huber loss.
    :returns: ``(B,)`` ``(1/N) Σ_i Σ_j ρ^κ_{τ_i}(T θ_j − θ_i)``.
    """
    u = target.detach().unsqueeze(1) - current.unsqueeze(2)  # (B, N, M)
    huber = F.huber_loss(u, torch.zeros_like(u), reduction="none", delta=kappa)
    weight = (tau.view(1, -1, 1) - (u.detach() < 0).to(u.dtype)).abs()
    return (weight * huber).sum(dim=2).mean(dim=1)


def quantile_huber_loss(
    current: torch.Tensor, target: torch.Tensor, tau: torch.Tensor, kappa: float = 1.0
) -> torch.Tensor:
    """The quantile Huber loss of :func:`quantile_huber_loss_pairwise` in O((N + M) log M)
    per sample (see the module docstring).

    :param current: ``(B, N)`` predicted quantiles ``θ_i`` (differentiable).
    :param target: ``(B, M)`` target quantiles ``T θ_j`` (treated as constants).
    :param tau: ``(N,)`` quantile midpoints of ``current``.
    :param kappa: κ > 0 of the Huber loss.
    :returns: ``(B,)`` in the dtype of ``current``, differentiable w.r.t. ``current``.
    """
    if kappa <= 0:
        raise ValueError(f"kappa={kappa}: expected > 0")
    function: Any = _QuantileHuberLoss
    out = function.apply(current, target.detach(), tau.detach(), float(kappa))
    return cast(torch.Tensor, out)


def _quantile_huber_value_and_grad(
    current: torch.Tensor, target: torch.Tensor, tau: torch.Tensor, kappa: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss (B,), d loss / d current (B, N))`` by prefix sums over the sorted targets.

    For ``θ = θ_i`` and ``u_j = T_j − θ`` the targets split into four regions; with counts
    ``n`` and sums ``S1 = Σ T_j``, ``S2 = Σ T_j²`` of each region:

    - ``u < −κ``: ``Σ κ(−u − κ/2) = κ(nθ − S1) − nκ²/2``, weight ``1 − τ``;
    - ``−κ ≤ u < 0``: ``Σ u²/2 = (S2 − 2θ S1 + nθ²)/2``, weight ``1 − τ``;
    - ``0 ≤ u ≤ κ``: the same quadratic, weight ``τ``;
    - ``u > κ``: ``κ(S1 − nθ) − nκ²/2``, weight ``τ``.

    Region boundaries are found with one ``searchsorted``; at a boundary both neighbouring
    formulas agree in value and slope, so ties need no care.
    """
    b, n = current.shape
    m = target.shape[1]
    center = target.mean(dim=1, keepdim=True)
    t_sorted = (target - center).double().sort(dim=1).values  # (B, M)
    zero = t_sorted.new_zeros(b, 1, 2)
    prefix = torch.cat(
        [zero, torch.stack([t_sorted, t_sorted.square()], dim=2).cumsum(dim=1)], dim=1
    )  # (B, M + 1, 2): Σ_{j<k} T_j and Σ_{j<k} T_j²
    theta = (current - center).double()  # (B, N)
    edges = torch.stack([theta - kappa, theta, theta + kappa], dim=2).view(b, 3 * n)
    k = torch.searchsorted(t_sorted, edges)  # (B, 3N): #{T < edge}
    sums = prefix.gather(1, k.unsqueeze(2).expand(-1, -1, 2)).view(b, n, 3, 2)
    k = k.view(b, n, 3).double()
    n_lo, n_below, n_above = k[..., 0], k[..., 1] - k[..., 0], k[..., 2] - k[..., 1]
    n_hi = m - k[..., 2]
    s1, s2 = sums[..., 0], sums[..., 1]  # (B, N, 3) prefix sums at the three edges
    s1_lo, s1_below, s1_above = s1[..., 0], s1[..., 1] - s1[..., 0], s1[..., 2] - s1[..., 1]
    s1_hi = prefix[:, -1:, 0] - s1[..., 2]
    s2_below, s2_above = s2[..., 1] - s2[..., 0], s2[..., 2] - s2[..., 1]
    half_k2 = 0.5 * kappa * kappa
    th2 = theta.square()
    below = (
        kappa * (n_lo * theta - s1_lo)
        - n_lo * half_k2
        + 0.5 * (s2_below - 2.0 * theta * s1_below + n_below * th2)
    )
    above = (
        kappa * (s1_hi - n_hi * theta)
        - n_hi * half_k2
        + 0.5 * (s2_above - 2.0 * theta * s1_above + n_above * th2)
    )
    tau64 = tau.double().view(1, n)
    value = ((1.0 - tau64) * below + tau64 * above).mean(dim=1)
    d_below = kappa * n_lo + n_below * theta - s1_below  # d below / d θ
    d_above = n_above * theta - s1_above - kappa * n_hi  # d above / d θ
    grad = ((1.0 - tau64) * d_below + tau64 * d_above) / n
    return value.to(current.dtype), grad.to(current.dtype)


class _QuantileHuberLoss(torch.autograd.Function):
    """Autograd wrapper: the gradient is computed in closed form with the value."""

    @staticmethod
    def forward(
        ctx: Any, current: torch.Tensor, target: torch.Tensor, tau: torch.Tensor, kappa: float
    ) -> torch.Tensor:
        value, grad = _quantile_huber_value_and_grad(current.detach(), target, tau, kappa)
        ctx.save_for_backward(grad)
        return value

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (grad,) = ctx.saved_tensors
        return grad_output.unsqueeze(1) * grad, None, None, None


@dataclass(frozen=True, kw_only=True)
class DiscreteCQLConfig(DiscreteTDConfig):
    """Discrete CQL's settings (Kumar et al. 2020 on QR-DQN; Tianshou's offline Atari
    example): 200 quantiles, w = 10, Adam 1e-4."""

    name: ClassVar[str] = "cql"

    num_quantiles: int = param_default(QuantileQNet, "num_quantiles")
    """N, quantiles of the QR-DQN head"""
    min_q_weight: float = 10.0
    """w, the weight of the conservative term"""
    kappa: float = 1.0
    """κ of the quantile Huber loss"""
    double_q: bool = False
    """select the next action with the online network (double DQN) instead of the target
    network (QR-DQN's Algorithm 1)"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> DiscreteCQL:
        """A :class:`DiscreteCQL` of a :class:`QuantileQNet`."""
        n = discrete_actions(action_space)
        model = QuantileQNet(
            self.trunk(observation_space), n, self.num_quantiles, self.hidden_sizes
        )
        algorithm: DiscreteCQL = DiscreteCQL(
            policy=QValuePolicy(
                model=model, action_space=action_space, observation_space=observation_space
            ),
            optim=adam(self.lr),
            min_q_weight=self.min_q_weight,
            gamma=self.gamma,
            n_step_return_horizon=self.n_step_return_horizon,
            target_update_freq=self.target_update_freq,
            kappa=self.kappa,
            double_q=self.double_q,
            max_grad_norm=self.max_grad_norm,
        )
        return self.place(algorithm, device)


@dataclass(kw_only=True)
class DiscreteCQLTrainingStats(OfflineTrainingStats):
    """Statistics of one discrete CQL step."""

    loss: float
    """The minimised loss ``L_QR + w · L_CQL``."""
    qr_loss: float
    """The quantile regression loss ``L_QR``."""
    cql_loss: float
    """The conservative gap ``E[logsumexp_a Q(s, a) − Q(s, a_D)]`` (before the weight w)."""
    q_data: float
    """Mean ``Q(s, a_D)`` of the dataset actions."""
    q_logsumexp: float
    """Mean ``log Σ_a exp Q(s, a)``."""
    q_target: float
    """Mean of the target distribution's mean ``(1/N) Σ_j T θ_j``."""


TDiscreteCQLStats = TypeVar(
    "TDiscreteCQLStats", bound=DiscreteCQLTrainingStats, default=DiscreteCQLTrainingStats
)


@dataclass(frozen=True, slots=True)
class DiscreteCQLStep:
    """Tensors of one step, detached, for :meth:`DiscreteCQL._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar quantiles: ``(B, A, N)`` predicted quantiles at ``s``.
    :ivar q: ``(B, A)`` Q-values at ``s``.
    :ivar target: ``(B, N)`` target quantiles.
    :ivar qr_loss: ``(B,)`` per-sample quantile regression loss.
    """

    batch: DiscreteTransitions
    quantiles: torch.Tensor
    q: torch.Tensor
    target: torch.Tensor
    qr_loss: torch.Tensor


class DiscreteCQL(DiscreteOfflineAlgorithm[QValuePolicy, TDiscreteCQLStats]):
    """CQL(H) on QR-DQN (Kumar et al. 2020; Dabney et al. 2018); see the module docstring.

    :param policy: a :class:`QValuePolicy` whose model is a
        :class:`~tianshou_offline.algorithms.discrete.nets.QuantileQNet` (``(B, A, N)``).
    :param optim: optimizer factory for the network (Tianshou's examples: Adam, lr 1e-4 on
        Atari).
    :param double_q: select ``a*`` with the online network (double DQN, Tianshou's choice)
        instead of the target network (QR-DQN's Algorithm 1); costs one more forward pass.

    The other settings default to :class:`DiscreteCQLConfig`'s fields of the same names
    (documented there).
    """

    def __init__(
        self,
        *,
        policy: QValuePolicy,
        optim: OptimizerFactory,
        min_q_weight: float = DiscreteCQLConfig.min_q_weight,
        gamma: float = DiscreteCQLConfig.gamma,
        n_step_return_horizon: int = DiscreteCQLConfig.n_step_return_horizon,
        target_update_freq: int = DiscreteCQLConfig.target_update_freq,
        kappa: float = DiscreteCQLConfig.kappa,
        double_q: bool = DiscreteCQLConfig.double_q,
        max_grad_norm: float | None = DiscreteCQLConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        model = policy.model
        if not isinstance(model, QuantileQNet):
            raise TypeError(
                f"DiscreteCQL needs a QuantileQNet model (quantiles (B, A, N)); got {type(model).__name__}"
            )
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma}: expected a value in [0, 1]")
        if target_update_freq < 0:
            raise ValueError(f"target_update_freq={target_update_freq}: expected >= 0")
        self.model = model
        self.optim = self._make_optimizer(model, optim, max_grad_norm)
        self.min_q_weight = float(min_q_weight)
        self.gamma = gamma
        self.n_step = n_step_return_horizon
        self.target_update_freq = int(target_update_freq)
        self.kappa = float(kappa)
        self.double_q = double_q
        self.model_target = self._add_target(model) if target_update_freq > 0 else None
        self.register_buffer(
            "tau_hat", quantile_midpoints(model.num_quantiles, policy.device), persistent=False
        )
        self.tau_hat: torch.Tensor

    def _update_with_batch(
        self, batch: RolloutBatchProtocol | DiscreteTransitions
    ) -> TDiscreteCQLStats:
        b = self._as_transitions(batch)
        target_net = self._target_for_step(self.model, self.model_target, self.target_update_freq)
        rows = torch.arange(len(b), device=b.act.device)

        # 1. distributional target (QR-DQN, Algorithm 1)
        with torch.no_grad():
            next_dist = target_net(b.obs_next)  # (B, A, N)
            select = self.model(b.obs_next) if self.double_q else next_dist
            next_act = select.mean(dim=2).argmax(dim=1)
            target = b.rew.unsqueeze(1) + b.discount.unsqueeze(1) * next_dist[rows, next_act]

        # 2. quantile regression loss on the dataset actions
        quantiles = self.model(b.obs)  # (B, A, N)
        current = quantiles[rows, b.act]  # (B, N)
        qr_per_sample = quantile_huber_loss(current, target, self.tau_hat, self.kappa)
        qr_loss = qr_per_sample.mean()

        # 3. CQL(H): log-sum-exp over actions minus the dataset action's value
        q = quantiles.mean(dim=2)  # (B, A)
        logsumexp = torch.logsumexp(q, dim=1)
        q_data = q[rows, b.act]
        cql_loss = (logsumexp - q_data).mean()

        # 4. one step on the total loss
        loss = qr_loss + self.min_q_weight * cql_loss
        self.optim.step(loss)

        stats = self._make_stats(
            loss=loss,
            qr_loss=qr_loss,
            cql_loss=cql_loss,
            q_data=q_data.mean(),
            q_logsumexp=logsumexp.mean(),
            q_target=target.mean(),
        )
        self._extend_stats(
            stats,
            DiscreteCQLStep(
                batch=b,
                quantiles=quantiles.detach(),
                q=q.detach(),
                target=target,
                qr_loss=qr_per_sample.detach(),
            ),
        )
        return stats

    def _extend_stats(self, stats: TDiscreteCQLStats, step: DiscreteCQLStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""

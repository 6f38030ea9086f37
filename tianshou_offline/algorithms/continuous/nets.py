"""Networks for the continuous-control algorithms: MLPs, actors, a batched critic ensemble,
BCQ's VAE and perturbation model, and a convolutional encoder of pixel observations
(:class:`ConvEncoder`): the actors, :class:`ValueFunction` and :class:`CriticEnsemble` take
an optional ``encoder`` applied to the observation first (``D`` is then its output size).

Every module takes and returns plain tensors (no Tianshou ``Batch``, no numpy) so that the
algorithms can call them on device-resident mini-batches without conversions. Shapes use
``B`` for the batch, ``N`` for samples per state, ``E`` for ensemble members, ``D`` for the
(flat) observation size, ``A`` for the action size and ``H`` for a hidden width. All tensors
are ``float32``. Actions live in the normalised range ``[-1, 1]``; the policies scale them to
the environment's bounds (Tianshou's ``action_scaling``).

Inputs that are concatenated (``(s, a)`` for a critic, ``(s, z)`` for a decoder) may have
different leading shapes: ``obs (B, D)`` with ``act (B, N, A)`` is evaluated without copying
``obs`` N times — the first layer applies its observation columns once per state and adds
them to the per-sample action part. This is the same function as a ``Linear`` on the
concatenation, only cheaper when ``N > 1``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN = -20.0
"""Lower clamp of a Gaussian actor's log standard deviation (as Tianshou's actors)."""
LOG_STD_MAX = 2.0
"""Upper clamp of a Gaussian actor's log standard deviation."""


def _uniform_fan_in_(tensor: torch.Tensor, fan_in: int) -> None:
    """PyTorch's default ``nn.Linear`` initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    nn.init.uniform_(tensor, -bound, bound)


class ConcatLinear(nn.Module):
    """``Linear`` applied to the concatenation of several inputs along the last dimension.

    :param in_dims: the last-dimension size of each input, in concatenation order.
    :param out_dim: output features.

    ``forward(x_1, …, x_k)`` with ``x_i`` of shape ``(*S_i, in_dims[i])`` returns
    ``(*S, out_dim)`` where ``S`` is the broadcast of the ``S_i``. Equal leading shapes are
    concatenated and multiplied once; broadcast ones are multiplied separately and summed.
    """

    def __init__(self, in_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.in_dims = tuple(int(d) for d in in_dims)
        fan_in = sum(self.in_dims)
        self.weight = nn.Parameter(torch.empty(out_dim, fan_in))
        self.bias = nn.Parameter(torch.empty(out_dim))
        _uniform_fan_in_(self.weight, fan_in)
        _uniform_fan_in_(self.bias, fan_in)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.in_dims):
            raise ValueError(f"expected {len(self.in_dims)} inputs, got {len(inputs)}")
        if len(inputs) == 1:
            return F.linear(inputs[0], self.weight, self.bias)
        shapes = {x.shape[:-1] for x in inputs}
        if len(shapes) == 1:
            return F.linear(torch.cat(inputs, dim=-1), self.weight, self.bias)
        weights = torch.split(self.weight, list(self.in_dims), dim=1)
        out = F.linear(inputs[0], weights[0], self.bias)
        for x, w in zip(inputs[1:], weights[1:], strict=True):
            out = out + F.linear(x, w)
        return out


class MLP(nn.Module):
    """A ReLU multi-layer perceptron on the concatenation of its inputs.

    :param in_dims: sizes of the inputs that are concatenated (one entry for a single input).
    :param out_dim: output size; 0 means no output layer (the last hidden layer is returned,
        after its ReLU).
    :param hidden_sizes: widths of the hidden layers, e.g. ``(256, 256)``.

    ``forward(*inputs) -> (*S, out_dim)``; see :class:`ConcatLinear` for broadcasting.
    """

    def __init__(self, in_dims: Sequence[int], out_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        sizes = [int(h) for h in hidden_sizes]
        if not sizes and out_dim <= 0:
            raise ValueError("an MLP needs hidden layers or an output layer")
        first_out = sizes[0] if sizes else out_dim
        self.first = ConcatLinear(in_dims, first_out)
        layers: list[nn.Module] = []
        if sizes:
            layers.append(nn.ReLU())
            for h_in, h_out in itertools.pairwise(sizes):
                layers += [nn.Linear(h_in, h_out), nn.ReLU()]
            if out_dim > 0:
                layers.append(nn.Linear(sizes[-1], out_dim))
        self.rest = nn.Sequential(*layers)
        self.out_dim = out_dim if out_dim > 0 else sizes[-1]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.rest(self.first(*inputs))
        return out


def encode(encoder: nn.Module | None, obs: torch.Tensor, *, frozen: bool = False) -> torch.Tensor:
    """``encoder(obs)`` (``obs`` itself without an encoder); ``frozen``: without gradients
    (a network evaluated with detached parameters)."""
    if encoder is None:
        return obs
    if frozen:
        with torch.no_grad():
            out: torch.Tensor = encoder(obs)
        return out
    out = encoder(obs)
    return out


class DeterministicActor(nn.Module):
    """``π(s) = tanh(MLP(s))``: a deterministic actor with actions in ``[-1, 1]``.

    :param obs_dim: D.
    :param act_dim: A.
    :param hidden_sizes: hidden widths.
    :param encoder: applied to the observation first (e.g. a :class:`ConvEncoder`).

    ``forward(obs (B, D)) -> act (B, A)``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        *,
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder: nn.Module | None
        self.register_module("encoder", encoder)  # a module slot even when None
        self.net = MLP([obs_dim], act_dim, hidden_sizes)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(encode(self.encoder, obs)))


class GaussianActor(nn.Module):
    """A diagonal Gaussian actor: ``obs (B, D) -> (mean (B, A), log_std (B, A))``.

    :param obs_dim: D.
    :param act_dim: A.
    :param hidden_sizes: hidden widths of the trunk.
    :param conditioned_std: the log standard deviation is a head of the trunk (as in SAC);
        otherwise it is a state-independent parameter.
    :param log_std_bounds: clamp of the log standard deviation.
    :param tanh_mean: bound the mean with ``tanh`` (the Gaussian itself is not squashed): the
        actor of IQL's authors and CORL (``means = tanh(MLP(s))``, a state-independent std).
    :param encoder: applied to the observation first (e.g. a :class:`ConvEncoder`).

    The mean is unbounded unless ``tanh_mean``;
    :class:`~tianshou_offline.algorithms.continuous.policies.GaussianPolicy` squashes samples
    with ``tanh`` (or clips them).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        *,
        conditioned_std: bool = True,
        log_std_bounds: tuple[float, float] = (LOG_STD_MIN, LOG_STD_MAX),
        tanh_mean: bool = False,
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder: nn.Module | None
        self.register_module("encoder", encoder)  # a module slot even when None
        self.act_dim = act_dim
        self.conditioned_std = conditioned_std
        self.tanh_mean = tanh_mean
        self.log_std_min, self.log_std_max = log_std_bounds
        self.net = MLP([obs_dim], 2 * act_dim if conditioned_std else act_dim, hidden_sizes)
        self.log_std = nn.Parameter(torch.zeros(act_dim), requires_grad=not conditioned_std)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(encode(self.encoder, obs))
        if self.conditioned_std:
            mean, log_std = out.split(self.act_dim, dim=-1)
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        if self.tanh_mean:
            mean = torch.tanh(mean)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)


class ValueFunction(nn.Module):
    """A state-value network ``V(s)``: an MLP with a scalar output (IQL's ``V_ψ``).

    :param obs_dim: D.
    :param hidden_sizes: hidden widths.
    :param encoder: applied to the observation first (e.g. a :class:`ConvEncoder`).

    ``forward(obs (B, D)) -> (B,)``.
    """

    def __init__(
        self,
        obs_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        *,
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder: nn.Module | None
        self.register_module("encoder", encoder)  # a module slot even when None
        self.net = MLP([obs_dim], 1, hidden_sizes)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(encode(self.encoder, obs))
        return out.squeeze(-1)


class _EnsembleHead(torch.autograd.Function):
    """The scalar output layer of an ensemble, ``q[e, m] = h[e, m] · w[e] + b[e]``.

    ``baddbmm`` with a single output column runs a slow path on CPU (10× slower forward,
    2× slower backward); this computes the same values as a row-vector product and writes
    the gradients directly. Inputs: ``h (E, M, H)``, ``w (E, H, 1)``, ``b (E, 1, 1)``;
    output ``(E, M)``. Written in the ``setup_context`` form with a generated vmap rule, so
    that ``torch.func.vmap`` can batch it (the seed-batched algorithms,
    :mod:`tianshou_offline.algorithms.seeds`).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(b, w.transpose(1, 2), h.transpose(1, 2)).squeeze(1)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        h, w, _ = inputs
        ctx.save_for_backward(h, w)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        h, w = ctx.saved_tensors
        grad_h = grad.unsqueeze(-1) * w.transpose(1, 2) if ctx.needs_input_grad[0] else None
        grad_w = (
            torch.bmm(grad.unsqueeze(1), h).transpose(1, 2) if ctx.needs_input_grad[1] else None
        )
        grad_b = grad.sum(-1).reshape(-1, 1, 1) if ctx.needs_input_grad[2] else None
        return grad_h, grad_w, grad_b


_ensemble_head: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = (
    _EnsembleHead.apply
)


class CriticEnsemble(nn.Module):
    """``E`` independent Q-networks ``Q_e(s, a)`` evaluated in one batched call.

    Each member is an MLP on ``(s, a)`` with the given hidden widths and a scalar output —
    the same function class as E separate Tianshou ``ContinuousCritic(Net(concat=True))``
    networks; the members' weights are stacked so one ``bmm`` evaluates all of them.

    :param obs_dim: D.
    :param act_dim: A.
    :param hidden_sizes: hidden widths of each member, e.g. ``(256, 256)``.
    :param num_critics: E (2 for clipped double Q-learning).
    :param layer_norm: apply LayerNorm (with a learned scale and shift per member) after
        each hidden layer's ReLU — ``Linear → ReLU → LayerNorm``, ReBRAC's critics (Tarasov
        et al. 2023, Sec. 4; CORL's ``critic_ln``).
    :param encoder: applied to the observation first, shared by the members (e.g. a
        :class:`ConvEncoder`; ``obs_dim`` is then its output size).

    ``forward(obs, act)``: ``obs (B, D)`` with ``act (B, A)`` gives ``(E, B)``; ``act (B, N, A)``
    gives ``(E, B, N)`` (obs is broadcast over the N actions, not copied).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        num_critics: int = 2,
        *,
        layer_norm: bool = False,
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder: nn.Module | None
        self.register_module("encoder", encoder)  # a module slot even when None
        if num_critics < 1:
            raise ValueError(f"num_critics={num_critics}: expected >= 1")
        if not hidden_sizes:
            raise ValueError("a critic needs at least one hidden layer")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.num_critics = num_critics
        sizes = [obs_dim + act_dim, *(int(h) for h in hidden_sizes), 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            w = torch.empty(num_critics, fan_in, fan_out)
            b = torch.empty(num_critics, 1, fan_out)
            _uniform_fan_in_(w, fan_in)
            _uniform_fan_in_(b, fan_in)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.layer_norm = layer_norm
        self.norm_weights = nn.ParameterList()
        self.norm_biases = nn.ParameterList()
        if layer_norm:
            for width in sizes[1:-1]:
                self.norm_weights.append(nn.Parameter(torch.ones(num_critics, 1, width)))
                self.norm_biases.append(nn.Parameter(torch.zeros(num_critics, 1, width)))

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Clip each member's gradient norm to ``max_norm`` separately — what clipping E
        separate critics would do (the shared encoder's gradient is clipped on its own).
        :returns: the members' norms before clipping, ``(E,)``."""
        if self.encoder is not None:
            nn.utils.clip_grad_norm_(self.encoder.parameters(), max_norm)
        members = itertools.chain(self.weights, self.biases, self.norm_weights, self.norm_biases)
        grads = [p.grad for p in members if p.grad is not None]
        if not grads:
            return torch.zeros(self.num_critics)
        e = self.num_critics
        norms = torch.stack([g.reshape(e, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(e, *([1] * (g.dim() - 1))))
        return norms

    def forward(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        *,
        member: int | None = None,
        detach_params: bool = False,
    ) -> torch.Tensor:
        """Q-values of every member (or of one).

        :param obs: ``(B, D)``.
        :param act: ``(B, A)`` or ``(B, N, A)``.
        :param member: evaluate only this member; the output then has no ``E`` dimension.
        :param detach_params: use detached weights, so that gradients reach ``act`` (an
            actor's loss) but not the critic's parameters.
        :returns: ``(E, B)`` / ``(E, B, N)``, or ``(B,)`` / ``(B, N)`` with ``member``.
        """
        obs = encode(self.encoder, obs, frozen=detach_params)
        weights: list[torch.Tensor] = list(self.weights)
        biases: list[torch.Tensor] = list(self.biases)
        norms: list[torch.Tensor] = [*self.norm_weights, *self.norm_biases]
        if member is not None:
            weights = [w[member : member + 1] for w in weights]
            biases = [b[member : member + 1] for b in biases]
            norms = [n[member : member + 1] for n in norms]
        if detach_params:
            weights = [w.detach() for w in weights]
            biases = [b.detach() for b in biases]
            norms = [n.detach() for n in norms]
        batch = obs.shape[0]
        samples = act.shape[1] if act.dim() == 3 else None
        w0 = weights[0]
        if samples is None:
            x = torch.cat([obs, act], dim=-1)  # (B, D + A)
            h = torch.baddbmm(biases[0], x.expand(w0.shape[0], *x.shape), w0)  # (E, B, H)
        else:
            w_obs, w_act = w0[:, : self.obs_dim], w0[:, self.obs_dim :]
            h_obs = torch.baddbmm(biases[0], obs.expand(w0.shape[0], *obs.shape), w_obs)
            a = act.reshape(1, batch * samples, self.act_dim).expand(w0.shape[0], -1, -1)
            h_act = torch.bmm(a, w_act).view(w0.shape[0], batch, samples, -1)
            h = (h_act + h_obs.unsqueeze(2)).view(w0.shape[0], batch * samples, -1)
        q = self._rest(h, weights, biases, norms)  # (E, M)
        if samples is not None:
            q = q.view(q.shape[0], batch, samples)
        return q.squeeze(0) if member is not None else q

    def _rest(
        self,
        h: torch.Tensor,
        weights: list[torch.Tensor],
        biases: list[torch.Tensor],
        norms: list[torch.Tensor],
    ) -> torch.Tensor:
        """The layers after the first: ``h (E, M, H)`` (before its activation) → ``(E, M)``."""
        hidden = len(weights) - 1
        norm_w, norm_b = norms[:hidden], norms[hidden:]

        def activate(h: torch.Tensor, layer: int) -> torch.Tensor:
            h = torch.relu(h)
            if not self.layer_norm:
                return h
            h = F.layer_norm(h, h.shape[-1:])
            return torch.addcmul(norm_b[layer], h, norm_w[layer])

        for layer, (w, b) in enumerate(zip(weights[1:-1], biases[1:-1], strict=True)):
            h = torch.baddbmm(b, activate(h, layer), w)
        out: torch.Tensor = _ensemble_head(activate(h, hidden - 1), weights[-1], biases[-1])
        return out

    def action_gradients(
        self, obs: torch.Tensor, act: torch.Tensor, *, create_graph: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's Q-value and its gradient with respect to the action,
        ``∇_a Q_e(s, a)``, at the same ``(s, a)`` — EDAC's ensemble-gradient term.

        Each member gets its own copy of ``act`` (a leaf), so the gradients are per member
        (a gradient of the sum over members with respect to one shared action would add
        them up).

        :param obs: ``(B, D)``.
        :param act: ``(B, A)`` (not differentiated: the gradients do not reach it).
        :param create_graph: keep the graph of the gradients, so that a loss on them can be
            differentiated with respect to the critic's parameters.
        :returns: ``q (E, B)`` and ``grad (E, B, A)``.
        """
        obs = encode(self.encoder, obs)
        e = self.num_critics
        a = act.detach().unsqueeze(0).expand(e, *act.shape).clone().requires_grad_(True)
        x = torch.cat([obs.unsqueeze(0).expand(e, *obs.shape), a], dim=-1)  # (E, B, D + A)
        weights: list[torch.Tensor] = list(self.weights)
        biases: list[torch.Tensor] = list(self.biases)
        norms: list[torch.Tensor] = [*self.norm_weights, *self.norm_biases]
        q = self._rest(torch.baddbmm(biases[0], x, weights[0]), weights, biases, norms)
        (grad,) = torch.autograd.grad(q.sum(), a, create_graph=create_graph)
        return q, grad


class VAE(nn.Module):
    """BCQ's conditional VAE ``G_ω(s)`` over actions (Fujimoto et al. 2019, Sec. 4).

    Encoder ``(s, a) -> (mean, log_std)`` of a latent ``z`` of size ``latent_dim``
    (``2 * A`` by default); decoder ``(s, z) -> tanh(MLP) ∈ [-1, 1]^A``. Sampling decodes
    ``z ~ N(0, 1)`` clipped to ``[-latent_clip, latent_clip]`` (0.5 in the authors' code).

    :param obs_dim: D.
    :param act_dim: A.
    :param hidden_sizes: widths of the encoder and decoder trunks.
    :param latent_dim: size of z; ``None`` → ``2 * act_dim``.
    :param latent_clip: clip of the prior samples used by :meth:`decode`.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (750, 750),
        latent_dim: int | None = None,
        latent_clip: float = 0.5,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim or 2 * act_dim
        self.latent_clip = latent_clip
        self.encoder = MLP([obs_dim, act_dim], 0, hidden_sizes)
        self.mean_and_log_std = nn.Linear(self.encoder.out_dim, 2 * self.latent_dim)
        self.decoder = MLP([obs_dim, self.latent_dim], act_dim, hidden_sizes)

    def forward(
        self, obs: torch.Tensor, act: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct ``act``: returns ``(recon (B, A), mean (B, L), log_std (B, L))``."""
        mean, log_std = self.mean_and_log_std(self.encoder(obs, act)).chunk(2, dim=-1)
        log_std = log_std.clamp(-4.0, 15.0)
        z = mean + log_std.exp() * torch.randn_like(mean)
        return self.decode(obs, z), mean, log_std

    def decode(
        self, obs: torch.Tensor, z: torch.Tensor | None = None, num_samples: int | None = None
    ) -> torch.Tensor:
        """Decode actions for ``obs (B, D)``.

        :param z: latents ``(B, L)`` or ``(B, N, L)``; ``None`` samples them from the clipped
            prior, ``num_samples`` per state when given.
        :returns: ``(B, A)``, or ``(B, N, A)`` for N samples per state.
        """
        if z is None:
            shape: tuple[int, ...] = (obs.shape[0], self.latent_dim)
            if num_samples is not None:
                shape = (obs.shape[0], num_samples, self.latent_dim)
            z = torch.randn(shape, device=obs.device).clamp(-self.latent_clip, self.latent_clip)
        state = obs.unsqueeze(1) if z.dim() == 3 else obs
        return torch.tanh(self.decoder(state, z))


class Perturbation(nn.Module):
    """BCQ's perturbation model ``ξ_φ(s, a, Φ)``: ``a + Φ·tanh(MLP(s, a))`` clipped to ``[-1, 1]``.

    :param obs_dim: D.
    :param act_dim: A.
    :param hidden_sizes: hidden widths.
    :param phi: Φ, the largest perturbation (0.05 in the paper's experiments).

    ``forward(obs (B, D) or (B, 1, D), act (B, A) or (B, N, A)) -> act`` of ``act``'s shape.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (400, 300),
        phi: float = 0.05,
    ) -> None:
        super().__init__()
        self.phi = phi
        self.net = MLP([obs_dim, act_dim], act_dim, hidden_sizes)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        state = obs.unsqueeze(1) if act.dim() == 3 and obs.dim() == 2 else obs
        return (act + self.phi * torch.tanh(self.net(state, act))).clamp(-1.0, 1.0)


class ConvEncoder(nn.Module):
    """The pixel encoder of DrQ-v2 (Yarats et al. 2021, "Mastering Visual Continuous Control:
    Improved Data-Augmented Reinforcement Learning", Sec. 3 and App. B) as used by V-D4RL's
    offline baselines (Lu et al. 2022, "Challenges and Opportunities in Offline Reinforcement
    Learning from Visual Observations"): ``x/255 − 0.5``, four 3×3 convolutions of 32 channels
    (strides 2, 1, 1, 1) with ReLU, flattened, then ``Linear → LayerNorm → tanh`` to
    ``features`` (50).

    ``forward(obs) -> (B, features)`` for ``obs`` ``(B, C·H·W)`` (the policies' flat
    observations) or ``(B, C, H, W)``, any numeric dtype (``uint8`` pixels).

    Differences from DrQ-v2: no random-shift augmentation, and the algorithms give each
    network its own encoder (as d3rlpy's encoder factories do) rather than one encoder
    trained by the critic and shared, detached, with the actor.

    :param obs_shape: ``(C, H, W)``.
    :param features: the output size.
    """

    def __init__(self, obs_shape: Sequence[int], features: int = 50) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"obs_shape={tuple(obs_shape)}: expected (C, H, W)")
        self.obs_shape = tuple(int(x) for x in obs_shape)
        c, h, w = self.obs_shape
        if min(h, w) < 15:
            raise ValueError(f"obs_shape={self.obs_shape}: expected images of at least 15×15")
        self.convs = nn.Sequential(
            nn.Conv2d(c, 32, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = int(self.convs(torch.zeros(1, c, h, w)).shape[1])
        self.head = nn.Sequential(nn.Linear(flat, features), nn.LayerNorm(features), nn.Tanh())
        self.out_dim = int(features)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.reshape(obs.shape[0], *self.obs_shape).to(torch.float32) / 255.0 - 0.5
        out: torch.Tensor = self.head(self.convs(x))
        return out

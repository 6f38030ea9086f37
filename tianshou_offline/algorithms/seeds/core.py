"""K independent seeds of an algorithm trained as one batched program.

Research runs many seeds of the same small networks; run one after another (or as K
processes), each gradient step pays PyTorch's per-operator cost K times. A seed batch pays it
once: every network carries a leading seed dimension ``K``, every mini-batch is ``(K, B, …)``
(each seed draws its own rows), and one call of each operator computes all seeds.

**Design.** A :class:`SeedBatch` is built from K plain algorithms of one architecture (the
*members*, built by :func:`~tianshou_offline.algorithms.seeds.make_seed_batch` from the
registry, one seed each):

- *Stacked parameters* (:class:`SeedStack`): every parameter of a member's network becomes
  one ``(K, …)`` parameter of the batch, and each member's parameter is re-pointed at its
  slice (a view). The members therefore always hold their seed's current weights: ``members[k]``
  is a plain algorithm and ``members[k].policy`` a plain Tianshou policy of seed ``k`` — no
  copying to evaluate, export or checkpoint a seed.
- *Forward*: ``torch.func.vmap`` of ``torch.func.functional_call`` of the member's own module
  over the stacked parameters, so the batch runs exactly the networks' own code (no second
  implementation of any network). Gradients flow through ordinary autograd.
- *Per-seed losses*: each method's batched update (one method, in the order of the plain
  update, in its own module of this package) reduces over the batch dimensions only, keeping a
  ``(K,)`` loss, and steps on their sum. The seeds' parameters are disjoint, so the gradient of
  the sum with respect to seed k's parameters is the gradient of seed k's loss.
- *Optimizers* (:meth:`SeedBatch._mirror_optimizer`): one optimizer of the member's class and
  settings over the stacked parameters. Adam is elementwise, so its moments are per seed
  (each ``exp_avg[k]`` is seed k's) and the update of seed k equals that of a single run; the
  step count is common because all seeds step together. Gradient-norm clipping is per seed
  (per seed and critic member for a :class:`CriticEnsemble`, as the plain algorithms clip each
  member), never over the whole stack.
- *Randomness* (:class:`SeedRandom`): one ``torch.Generator`` per seed; every draw (mini-batch
  rows, exploration noise, sampled actions) is drawn per seed, in the order the plain update
  draws it. On CPU, seed k of ``make_seed_batch(..., seeds=[s_0, …])`` therefore draws exactly
  what ``torch.manual_seed(s_k)`` then ``make_algorithm(...)`` then ``update(buffer, B)``
  draws: the batch's trajectory of seed k is that single run's, to float tolerance
  (``tests/algorithms/test_seed_batch.py`` checks parameters and statistics over hundreds of steps).
- *Statistics*: :class:`SeedBatchStats` holds one typed stats object per seed (the member
  algorithm's own ``TrainingStats`` class) and logs the mean over seeds and every seed's value.
- *Checkpoints*: the batch's ``state_dict`` holds everything (stacked parameters, optimizer
  states, step count, the seeds' generators); :meth:`SeedBatch.seed_state_dict` is seed k's
  plain-algorithm checkpoint (loadable by a plain algorithm of the same config) and
  :meth:`SeedBatch.load_seed_state_dict` puts one back.

Training goes through Tianshou's ``OfflineTrainer`` unchanged (a seed batch is an
``OfflineAlgorithm``; its ``policy`` is seed 0's, which the trainer's test collector
evaluates) or a plain loop of :meth:`update`. Evaluate every seed with its member's policy
(:meth:`SeedBatch.policies`).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from abc import ABC
from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Any, Generic, cast

import torch
from tianshou.algorithm.algorithm_base import Policy, TrainingStats
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from torch import nn
from torch.func import functional_call, vmap
from typing_extensions import TypeVar

from tianshou_offline.algorithms.continuous.nets import CriticEnsemble
from tianshou_offline.algorithms.core import (
    GradientStep,
    OfflineAlgorithmCore,
    OfflineDataset,
    SampleStream,
    TransitionBatch,
    to_device_positions,
)
from tianshou_offline.algorithms.deferred import OfflineTrainingStats, deferred_build

__all__ = [
    "SeedBatch",
    "SeedBatchStats",
    "SeedRandom",
    "SeedSampler",
    "SeedStack",
    "stack_parameters",
]

TMember = TypeVar("TMember", bound=OfflineAlgorithmCore[Any, Any, Any, Any])
"""The plain algorithm a seed batch is made of."""
TSeedStats = TypeVar("TSeedStats", bound=TrainingStats)
"""The member algorithm's statistics class."""
TSeedBatch = TypeVar("TSeedBatch", bound=TransitionBatch)
"""The member's transition mini-batch kind."""
TSeedItems = TypeVar("TSeedItems", bound=Sized)
"""The member's mini-batch kind: transitions, or a sequence model's segments."""


# --------------------------------------------------------------------------- randomness


class SeedRandom:
    """One ``torch.Generator`` per seed; every draw is ``(K, *size)``, row k from seed k's
    generator (K calls: the numbers of row k are those a single run with that generator
    state draws with the same call).

    :param states: each seed's initial generator state (``torch.get_rng_state()`` of a
        single run at the point its training starts).
    :param device: where the numbers are drawn.
    """

    def __init__(self, states: Sequence[torch.Tensor], device: torch.device) -> None:
        self.device = device
        self.generators: list[torch.Generator] = []
        for state in states:
            g = torch.Generator(device=device)
            g.set_state(state)
            self.generators.append(g)

    def __len__(self) -> int:
        return len(self.generators)

    def randint(self, high: int, size: Sequence[int]) -> torch.Tensor:
        """Integers in ``[0, high)``, ``(K, *size)`` int64 (``torch.randint`` per seed)."""
        return torch.stack(
            [torch.randint(high, tuple(size), generator=g, device=self.device) for g in self]
        )

    def randn(self, size: Sequence[int]) -> torch.Tensor:
        """Standard normal ``(K, *size)`` float32 (``torch.randn`` per seed)."""
        return torch.stack(
            [torch.randn(tuple(size), generator=g, device=self.device) for g in self]
        )

    def rand(self, size: Sequence[int]) -> torch.Tensor:
        """Uniform on ``[0, 1)``, ``(K, *size)`` float32 (``torch.rand`` per seed)."""
        return torch.stack([torch.rand(tuple(size), generator=g, device=self.device) for g in self])

    def randperm(self, n: int) -> torch.Tensor:
        """A permutation of ``range(n)`` per seed, ``(K, n)`` int64."""
        return torch.stack([torch.randperm(n, generator=g, device=self.device) for g in self])

    def __iter__(self) -> Iterator[torch.Generator]:
        return iter(self.generators)

    def get_state(self) -> list[torch.Tensor]:
        """Every generator's state (byte tensors, saved in checkpoints)."""
        return [g.get_state() for g in self]

    def set_state(self, states: Sequence[torch.Tensor]) -> None:
        """Restore what :meth:`get_state` returned.

        :raises ValueError: a different number of states than seeds.
        """
        if len(states) != len(self):
            raise ValueError(f"got {len(states)} generator states for {len(self)} seeds")
        for g, state in zip(self, states, strict=True):
            g.set_state(state.cpu())


# --------------------------------------------------------------------------- stacked networks


def stack_parameters(params: Sequence[nn.Parameter]) -> nn.Parameter:
    """One ``(K, …)`` parameter of K equally-shaped parameters; each of them is re-pointed at
    its slice (a view), so that the originals always hold their seed's current values."""
    first = params[0]
    stacked = nn.Parameter(
        torch.stack([p.detach() for p in params]).contiguous(), requires_grad=first.requires_grad
    )
    for k, p in enumerate(params):
        p.data = stacked.data[k]
    return stacked


def seed_sum(loss: torch.Tensor | None) -> torch.Tensor | None:
    """A per-seed loss ``(K,)`` summed over the seeds (the seeds' parameters are disjoint, so
    one backward of the sum is each seed's own); ``None`` (a fixed temperature) stays ``None``,
    for :func:`~tianshou_offline.algorithms.gradient.joint_step`'s ``optional``."""
    return None if loss is None else loss.sum()


class SeedStack(nn.Module):
    """K modules of one architecture as one module whose parameters carry a leading seed
    dimension; calling it runs the modules' own ``forward`` for every seed at once
    (``vmap`` of ``functional_call`` over the stacked parameters).

    :param modules: the K modules (their parameters become views of the stack's).

    ``forward(*inputs, **kwargs)``: every input has a leading ``K`` dimension (seed k's input
    is ``inputs[i][k]``); keyword arguments are passed to every seed's call unchanged. The
    output is the modules' output with a leading ``K``.
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        if not modules:
            raise ValueError("a seed stack needs at least one module")
        names = [name for name, _ in modules[0].named_parameters()]
        buffer_names = [name for name, _ in modules[0].named_buffers()]
        for m in modules[1:]:
            if [n for n, _ in m.named_parameters()] != names:
                raise ValueError("the modules of a seed stack must have the same parameters")
        self.num_seeds = len(modules)
        self._names = names
        self._buffer_names = buffer_names
        # the template is not a submodule: its parameters are replaced at every call
        self._template: tuple[nn.Module] = (copy.deepcopy(modules[0]).to("meta"),)
        self.stacked = nn.ParameterList(
            [stack_parameters([dict(m.named_parameters())[n] for m in modules]) for n in names]
        )
        for i, name in enumerate(buffer_names):
            values = [dict(m.named_buffers())[name] for m in modules]
            stacked = torch.stack([b.detach() for b in values]).contiguous()
            self.register_buffer(f"buffer_{i}", stacked)
            for k, b in enumerate(values):
                b.data = stacked[k]
        self.ensemble = isinstance(modules[0], CriticEnsemble)
        """The modules are critic ensembles: gradients are clipped per seed and member."""

    @property
    def template(self) -> nn.Module:
        """Seed 0's module on the meta device: the architecture ``forward`` runs."""
        return self._template[0]

    def named_stacked(self) -> dict[str, torch.Tensor]:
        """The stacked parameters and buffers by the modules' own names."""
        out: dict[str, torch.Tensor] = dict(zip(self._names, self.stacked, strict=True))
        for i, name in enumerate(self._buffer_names):
            out[name] = getattr(self, f"buffer_{i}")
        return out

    def forward(self, *inputs: torch.Tensor, **kwargs: Any) -> Any:
        template = self.template

        def one(params: dict[str, torch.Tensor], *args: torch.Tensor) -> Any:
            return functional_call(template, params, args, kwargs)

        return vmap(one, randomness="error")(self.named_stacked(), *inputs)

    def seed_params(self, detach: bool = False) -> dict[str, torch.Tensor]:
        """The stacked tensors (detached when ``detach``), for a caller's own ``vmap``."""
        params = self.named_stacked()
        return {k: v.detach() for k, v in params.items()} if detach else params


class _StackedParams(nn.Module):
    """The stacked parameters one batched optimizer updates, with per-seed clipping.

    :param params: ``(K, …)`` parameters (``(K, E, …)`` for the ``ensemble`` ones).
    :param ensemble: for each parameter, whether its second dimension is a critic member
        (clipped separately, as :meth:`CriticEnsemble.clip_grad_norm_` does)."""

    def __init__(self, params: Sequence[nn.Parameter], ensemble: Sequence[bool]) -> None:
        super().__init__()
        self.params = nn.ParameterList(params)
        self._ensemble = list(ensemble)

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Clip each seed's gradient norm (each seed's and member's, for ensembles) to
        ``max_norm`` separately. :returns: the norms before clipping, ``(K,)`` or ``(K, E)``."""
        grads = [(p.grad, e) for p, e in zip(self.params, self._ensemble, strict=True)]
        grads = [(g, e) for g, e in grads if g is not None]
        if not grads:
            return torch.zeros(0)
        lead = grads[0][0].shape[:2] if grads[0][1] else grads[0][0].shape[:1]
        sq = sum(g.reshape(*lead, -1).pow(2).sum(-1) for g, _ in grads)
        norms = torch.as_tensor(sq).sqrt()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g, _ in grads:
            g.mul_(coef.view(*lead, *([1] * (g.dim() - len(lead)))))
        return norms


class _SameOptimizer(OptimizerFactory):
    """An optimizer of ``like``'s class with its settings (``defaults``), for new parameters
    (only the settings its constructor takes: AdamW's ``defaults`` also hold Adam's
    ``decoupled_weight_decay``, which AdamW sets itself)."""

    def __init__(self, like: torch.optim.Optimizer) -> None:
        super().__init__()
        self._cls = type(like)
        accepted = inspect.signature(self._cls.__init__).parameters
        self._defaults = {k: v for k, v in like.defaults.items() if k in accepted}

    def _create_optimizer_for_params(self, params: Any) -> torch.optim.Optimizer:
        return self._cls(params, **self._defaults)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SeedSampler(OfflineDataset[TSeedItems]):
    """The member's device-resident dataset, sampled per seed: a mini-batch is the member
    dataset's batch kind with every field ``(K, B, …)`` — row k drawn with seed k's generator.

    :ivar dataset: the member's dataset (one copy of the data for all seeds).
    :ivar rng: the seeds' generators.
    """

    dataset: OfflineDataset[TSeedItems]
    rng: SeedRandom
    streams: Sequence[SampleStream] | None = None
    """The members' sample streams where the member's dataset draws from one (the continuous
    and discrete algorithms, :class:`~tianshou_offline.algorithms.core.SampleStream`): seed k's batches
    are then its stream's, the stream seeded from seed k's generator as a single run seeds it
    from the global one (the same numbers on the CPU)."""

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def device(self) -> torch.device:
        return self.dataset.device

    @property
    def nbytes(self) -> int:
        return self.dataset.nbytes

    def gather(self, pos: torch.Tensor) -> TSeedItems:
        """The transitions at ``pos`` (``(K, B)`` int64): one gather of ``K·B`` rows."""
        k, b = pos.shape
        flat = self.dataset.gather(pos.reshape(-1))
        fields = {
            f.name: getattr(flat, f.name).view(k, b, *getattr(flat, f.name).shape[1:])
            for f in dataclasses.fields(cast(Any, flat))
        }
        out: TSeedItems = type(flat)(**fields)
        return out

    def sample(self, batch_size: int) -> TSeedItems:
        """``batch_size`` rows per seed, uniformly with replacement (``torch.randint``, or
        each seed's sample stream)."""
        if self.streams is None:
            return self.gather(self.rng.randint(len(self), (batch_size,)))
        n = len(self)
        rows = []
        for stream, generator in zip(self.streams, self.rng, strict=True):
            stream.start(generator)
            rows.append(stream.next(n, batch_size))
        return self.gather(to_device_positions(torch.stack(rows), self.device))

    def all(self, shuffle: bool = True) -> TSeedItems:
        """Every transition for every seed (a permutation per seed when ``shuffle``)."""
        n = len(self)
        if shuffle:
            return self.gather(self.rng.randperm(n))
        pos = torch.arange(n, device=self.device)
        return self.gather(pos.expand(len(self.rng), n))


# --------------------------------------------------------------------------- statistics


@dataclass(kw_only=True)
class SeedBatchStats(OfflineTrainingStats, Generic[TSeedStats]):
    """The statistics of one batched step: one typed stats object per seed (the member
    algorithm's own ``TrainingStats`` class). Logged as every field's mean over the seeds
    (``critic_loss``) and each seed's value (``seed3/critic_loss``).

    Built pending on the device (:func:`~tianshou_offline.algorithms.deferred.deferred_build`:
    one ``(F, K)`` tensor per step): the per-seed objects are made the first time ``seeds`` is
    read, so a step never waits for the device; ``OfflineStatsTrainer`` reads many steps' with
    one transfer."""

    seeds: tuple[TSeedStats, ...] = ()
    """Seed k's statistics, as its single run would report them."""

    def _get_self_dict(self) -> dict[str, Any]:
        per_seed = [s.get_loss_stats_dict() for s in self.seeds]
        out: dict[str, Any] = {"train_time": self.train_time, "smoothed_loss": self.smoothed_loss}
        for key in per_seed[0] if per_seed else {}:
            values = [float(d[key]) for d in per_seed if key in d]
            out[key] = sum(values) / len(values)
        for k, d in enumerate(per_seed):
            for key, value in d.items():
                out[f"seed{k}/{key}"] = value
        return out


# --------------------------------------------------------------------------- the batch


class SeedBatch(
    OfflineAlgorithmCore[Policy, SeedSampler[TSeedItems], TSeedItems, SeedBatchStats[TSeedStats]],
    Generic[TMember, TSeedItems, TSeedStats],
    ABC,
):
    """K seeds of one algorithm as one batched program (see the module docstring).

    A subclass per algorithm stacks the member's networks (:meth:`_stack`,
    :meth:`_stack_target`), mirrors its optimizers (:meth:`_mirror_optimizer`) and
    implements the batched update in ``_update_with_batch`` (every batch field is
    ``(K, B, …)``; losses are ``(K,)`` and stepped on their sum), returning
    :meth:`_seed_stats` of the per-seed values.

    :param members: K plain algorithms of one config (one per seed), freshly built.
    :param rng_states: each seed's generator state (default: each seed's index as its seed).
    """

    member_type: type[OfflineAlgorithmCore[Any, Any, Any, Any]]
    """The plain algorithm class this batch trains (checked at construction)."""

    def __init__(
        self, members: Sequence[TMember], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        if not members:
            raise ValueError(f"{type(self).__name__}: no members; expected K >= 1 algorithms")
        for m in members:
            if type(m) is not self.member_type:
                raise TypeError(
                    f"{type(self).__name__}: got a {type(m).__name__}; expected "
                    f"{self.member_type.__name__} members (one per seed, one config)"
                )
        super().__init__(policy=members[0].policy)
        self._members: tuple[TMember, ...] = tuple(members)
        self.gamma = members[0].gamma
        self.n_step = members[0].n_step
        device = members[0].device
        if rng_states is None:
            rng_states = [
                torch.Generator(device=device).manual_seed(k).get_state()
                for k in range(len(members))
            ]
        if len(rng_states) != len(members):
            raise ValueError(
                f"{type(self).__name__}: {len(rng_states)} generator states for "
                f"{len(members)} members"
            )
        self.rng = SeedRandom(rng_states, device)
        self._optim_pairs: list[tuple[GradientStep, list[GradientStep], list[nn.Parameter]]] = []
        self._stacked_of: dict[int, tuple[nn.Parameter, int]] = {}

    # ------------------------------------------------------------------ members

    @property
    def num_seeds(self) -> int:
        """K."""
        return len(self._members)

    @property
    def members(self) -> tuple[TMember, ...]:
        """The K plain algorithms; their parameters are views of the batch's, so each holds
        its seed's current weights (their optimizer states are filled in by
        :meth:`seed_state_dict`)."""
        return self._members

    def policies(self) -> list[Policy]:
        """The K Tianshou policies, seed k's at index k (live weights: evaluate them with a
        Tianshou ``Collector`` as any policy)."""
        return [m.policy for m in self._members]

    @property
    def device(self) -> torch.device:
        return self._members[0].device

    # ------------------------------------------------------------------ building blocks

    def _stack(self, modules: Sequence[nn.Module]) -> SeedStack:
        """Stack the members' module (one per seed) and remember which stacked parameter
        each member parameter is a slice of (for the optimizer states)."""
        originals = [list(m.parameters()) for m in modules]
        stack = SeedStack(modules)
        for k, params in enumerate(originals):
            for p, stacked in zip(params, stack.stacked, strict=True):
                self._stacked_of[id(p)] = (stacked, k)
        return stack

    def _stack_target(self, source: SeedStack, targets: Sequence[nn.Module]) -> SeedStack:
        """Stack the members' target networks of ``source``, kept up to date by the core's
        :meth:`_update_targets` / :meth:`_copy_targets`."""
        target = SeedStack(targets)
        target.requires_grad_(False)
        target.eval()
        self._target_pairs.append((source, target))
        self._polyak_tensors = None
        self._modules_cache = None
        return target

    def _stack_actor_critics(self, members: Sequence[Any]) -> None:
        """Stack the members' actor, critics and both their targets, and mirror the actor's
        and the critics' optimizers (the algorithms with a target actor: TD3+BC, ReBRAC,
        CRR)."""
        self.actor = self._stack([m.policy.actor for m in members])
        self.actor_target = self._stack_target(self.actor, [m.actor_target for m in members])
        self.critics = self._stack([m.critics for m in members])
        self.critics_target = self._stack_target(self.critics, [m.critics_target for m in members])
        self.actor_optim = self._mirror_optimizer("actor_optim")
        self.critic_optim = self._mirror_optimizer("critic_optim")

    def _stack_parameter(self, params: Sequence[nn.Parameter]) -> nn.Parameter:
        """Stack one plain parameter of every member (a temperature, a multiplier)."""
        stacked = stack_parameters(params)
        for k, p in enumerate(params):
            self._stacked_of[id(p)] = (stacked, k)
        return stacked

    def _mirror_optimizer(self, name: str) -> GradientStep:
        """The batched counterpart of every member's optimizer attribute ``name``: the same
        optimizer class and settings over the stacked parameters, clipped per seed when the
        members clip. Call after stacking the parameters it updates."""
        member_optims = [cast(GradientStep, getattr(m, name)) for m in self._members]
        first = member_optims[0]
        try:
            stacked = [self._stacked_of[id(p)][0] for p in first.params]
        except KeyError:
            raise ValueError(
                f"{type(self).__name__}: stack the parameters of {name} before mirroring it"
            ) from None
        ensemble = [callable(getattr(first._module, "clip_grad_norm_", None))] * len(stacked)
        holder = _StackedParams(stacked, ensemble)
        optim = self._make_optimizer(holder, _SameOptimizer(first.optim), first._max_grad_norm)
        # the member's current hyperparameters (a schedule may have set lr at construction)
        for group, like in zip(optim.optim.param_groups, first.optim.param_groups, strict=True):
            group.update({key: v for key, v in like.items() if key != "params"})
        schedulers = [s for s in self._members[0].lr_schedulers if s.optimizer is first.optim]
        for scheduler in schedulers:
            # the member's schedule, stepping the batch's optimizer (the same schedule for
            # every seed: all seeds step together); its closures are shared, not copied
            self.lr_schedulers.append(
                copy.deepcopy(scheduler, memo={id(first.optim): optim.optim, **_shallow(scheduler)})
            )
            _track_step_called(optim.optim)
        self._optim_pairs.append((optim, member_optims, stacked))
        return optim

    # ------------------------------------------------------------------ statistics

    def _seed_stats(self, values: dict[str, torch.Tensor | None]) -> SeedBatchStats[TSeedStats]:
        """Per-seed typed statistics from ``(K,)`` tensors (None: the field is None), kept on
        the device until read (one ``(F, K)`` stack per step, no synchronisation)."""
        k = self.num_seeds
        present = [name for name, v in values.items() if v is not None]
        tensor = (
            torch.stack(
                [cast(torch.Tensor, values[n]).detach().float().reshape(k) for n in present]
            )
            if present
            else torch.zeros(0, device=self.device)
        )
        names = tuple(values)
        members = self._members

        def build(flat: list[float]) -> dict[str, Any]:
            seeds = []
            for j, member in enumerate(members):
                row = {n: flat[i * k + j] for i, n in enumerate(present)}
                seeds.append(member.stats_type(**{n: row.get(n) for n in names}))
            return {"seeds": tuple(seeds)}

        return cast(
            SeedBatchStats[TSeedStats], deferred_build(SeedBatchStats, ("seeds",), tensor, build)
        )

    # ------------------------------------------------------------------ data

    def _build_dataset(self, buffer: ReplayBuffer) -> SeedSampler[TSeedItems]:
        """Seed 0's dataset (fitting its observation normaliser, which every member then
        copies: same data, same statistics), sampled per seed."""
        dataset = self._members[0]._build_dataset(buffer)
        self._share_normalizer()
        streams = self._sample_streams()
        if len(streams) == self.num_seeds:
            return SeedSampler(dataset, self.rng, streams)
        return SeedSampler(dataset, self.rng)

    def _share_normalizer(self) -> None:
        """Copy seed 0's observation normaliser (fitted on the data) to every member."""
        normalizer = getattr(self._members[0].policy, "obs_normalizer", None)
        if normalizer is not None:
            state = normalizer.state_dict()
            for m in self._members[1:]:
                m.policy.obs_normalizer.load_state_dict(state)

    def _as_transitions(self, batch: RolloutBatchProtocol | TSeedItems) -> TSeedItems:
        if isinstance(batch, TransitionBatch):
            return batch
        raise TypeError(
            f"{type(self).__name__}: got a Tianshou {type(batch).__name__}; a seed batch "
            "trains on its own per-seed mini-batches (update(buffer, batch_size) or "
            "OfflineTrainer)"
        )

    # ------------------------------------------------------------------ checkpoints

    def get_extra_state(self) -> dict[str, Any]:
        """The core's saved state, every seed's generator state and every seed's sample
        stream."""
        streams = [s.state() for s in self._sample_streams()]
        return {**super().get_extra_state(), "rng": self.rng.get_state(), "streams": streams}

    def _sample_streams(self) -> list[SampleStream]:
        """The members' sample streams (one per member: every member samples from one)."""
        found = [getattr(m, "sample_stream", None) for m in self._members]
        return [s for s in found if isinstance(s, SampleStream)]

    def set_extra_state(self, state: Any) -> None:
        super().set_extra_state(state)
        if "rng" in state:
            self.rng.set_state(state["rng"])
        for stream, saved in zip(self._sample_streams(), state.get("streams", []), strict=False):
            stream.load_state(saved)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load the whole batch (what :meth:`state_dict` saved): every seed's parameters,
        optimizer moments and generator, and seed 0's observation normaliser, which every
        member shares."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._share_normalizer()
        return result

    def _sync_member(self, k: int) -> None:
        """Copy seed k's optimizer states and counters into member k (its parameters are
        already views of the batch's). Subclasses add their own per-seed state."""
        member = self._members[k]
        member._num_updates = self.num_updates
        batch_schedulers = iter(self.lr_schedulers)
        for optim, member_optims, stacked in self._optim_pairs:
            state = optim.optim.state
            target = member_optims[k]
            for group, like in zip(
                target.optim.param_groups, optim.optim.param_groups, strict=True
            ):
                group.update({key: v for key, v in like.items() if key != "params"})
            for scheduler in member.lr_schedulers:
                if scheduler.optimizer is target.optim:
                    scheduler.load_state_dict(next(batch_schedulers).state_dict())
            for p_member, p_stacked in zip(target.params, stacked, strict=True):
                s = state.get(p_stacked)
                if not s:
                    continue
                target.optim.state[p_member] = {
                    key: (v[k].clone() if v.dim() > 0 and key != "step" else v.clone())
                    for key, v in s.items()
                }

    def _unsync_member(self, k: int) -> None:
        """Copy member k's optimizer states into seed k's slices of the batch's (after a
        ``load_state_dict`` of the member)."""
        for optim, member_optims, stacked in self._optim_pairs:
            state = optim.optim.state
            source = member_optims[k]
            for p_member, p_stacked in zip(source.params, stacked, strict=True):
                s = source.optim.state.get(p_member)
                if not s:
                    continue
                if p_stacked not in state or not state[p_stacked]:
                    state[p_stacked] = {
                        key: (
                            torch.zeros_like(p_stacked)
                            if v.dim() > 0 and key != "step"
                            else v.clone()
                        )
                        for key, v in s.items()
                    }
                for key, v in s.items():
                    if v.dim() > 0 and key != "step":
                        state[p_stacked][key][k].copy_(v)
                    else:
                        state[p_stacked][key].copy_(v)

    def seed_state_dict(self, k: int) -> dict[str, Any]:
        """Seed k's checkpoint as its plain algorithm's ``state_dict`` (parameters, optimizer
        moments, step count: a plain algorithm of the same config loads it and continues as
        seed k would). Tensors are copies, not views of the whole stack."""
        if not 0 <= k < self.num_seeds:
            raise IndexError(f"seed index {k}; expected 0 <= k < {self.num_seeds}")
        self._sync_member(k)
        member: Any = self._members[k]  # Tianshou's state_dict (with optimizers) is untyped
        return cast(dict[str, Any], _cloned(member.state_dict()))

    def load_seed_state_dict(self, k: int, state: dict[str, Any]) -> None:
        """Put seed k back from a plain checkpoint of its algorithm (its
        :meth:`seed_state_dict`, or a single run's ``state_dict``).

        :raises ValueError: the checkpoint's step count differs from the batch's (all seeds
            of a batch are at the same step).
        """
        if not 0 <= k < self.num_seeds:
            raise IndexError(f"seed index {k}; expected 0 <= k < {self.num_seeds}")
        member = self._members[k]
        member.load_state_dict(dict(state))  # Tianshou pops its optimizers key
        if member.num_updates != self.num_updates:
            raise ValueError(
                f"{type(self).__name__}: seed {k}'s checkpoint is at step "
                f"{member.num_updates}; the batch is at step {self.num_updates}"
            )
        self._unsync_member(k)


def _track_step_called(optimizer: torch.optim.Optimizer) -> None:
    """Mark ``optimizer.step`` as a scheduler built on it would (torch's scheduler warns on
    its first step when the optimizer's ``step`` was not wrapped by one)."""
    step = optimizer.step
    if hasattr(step, "_wrapped_by_lr_sched"):
        return

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        vars(optimizer)["_opt_called"] = True
        return step(*args, **kwargs)

    vars(wrapper)["_wrapped_by_lr_sched"] = True
    vars(optimizer)["step"] = wrapper


def _shallow(scheduler: Any) -> dict[int, Any]:
    """deepcopy memo entries keeping a scheduler's functions and callable objects (its
    ``lr_lambdas``) shared rather than copied."""
    out: dict[int, Any] = {}
    for value in vars(scheduler).values():
        for item in value if isinstance(value, list) else [value]:
            if callable(item):
                out[id(item)] = item
    return out


def _cloned(value: Any) -> Any:
    """``value`` with every tensor copied (recursively through dicts and lists)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return type(value)((k, _cloned(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value)(_cloned(v) for v in value)
    return value

"""The Decision Transformer (:class:`~tianshou_offline.algorithms.dt.algorithm.DecisionTransformer`,
continuous and discrete) for K seeds at once.

The update is the plain one (Algorithm 1's loss over the real steps of each seed's segments,
:func:`~tianshou_offline.algorithms.dt.algorithm.segment_loss` keeping the seed dimension)
with a leading seed dimension; AdamW's moments, the warm-up schedule and the gradient-norm
clip are per seed (:meth:`SeedBatch._mirror_optimizer`). Each seed draws its segment starts
with its own generator (``torch.randint``, as the plain dataset's ``sample`` draws from the
global one).

**Dropout.** A single run draws its dropout masks (embeddings, attention weights,
feed-forward) from torch's global generator, right after its segment starts, inside the
network's fused kernels. A vectorised forward (``vmap``) cannot draw seed k's masks from seed
k's generator in the order the single run does, so each seed's forward runs on its own
(``functional_call`` of the member's network on seed k's slices of the stacked parameters),
with seed k's generator standing in for the global one: the masks are the single run's,
exactly. The loss, the backward pass through the stacked parameters, the per-seed clip and
the AdamW step are batched. Seed k's trajectory is its single run's to float tolerance
(``tests/algorithms/test_seed_batch.py``).

**Speed.** A step is dominated by the transformer's matrix products, which batching seeds
does not shrink, so the batch is about level with separate runs (the Decision Transformer row
of ``benchmarks/seed_batch.py``'s kept results, in the README). A ``vmap`` forward (possible
without dropout) is not used: PyTorch has no batching rule for the CPU attention kernel and
runs it seed by seed, which made it slower than the per-seed forward. What the seed batch
gives the Decision Transformer is one process, one program and one checkpoint for K seeds
(grid seed groups, the quality table), not throughput.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from tianshou.data import ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from torch.func import functional_call

from tianshou_offline.algorithms.dt.algorithm import (
    DecisionTransformer,
    DiscreteDecisionTransformer,
    DTTrainingStats,
    segment_loss,
)
from tianshou_offline.algorithms.dt.segments import Segments
from tianshou_offline.algorithms.seeds.core import SeedBatch, SeedBatchStats, SeedSampler

__all__ = ["SeedDecisionTransformer", "SeedDiscreteDecisionTransformer"]


@contextmanager
def generator_as_global(generator: torch.Generator) -> Iterator[None]:
    """Run the block with ``generator``'s state as torch's global generator of its device
    (what layers such as dropout draw from), then keep the advanced state in ``generator``
    and restore the global one."""
    device = generator.device
    if device.type == "cuda":
        saved = torch.cuda.get_rng_state(device)
        torch.cuda.set_rng_state(generator.get_state(), device)
        try:
            yield
        finally:
            generator.set_state(torch.cuda.get_rng_state(device))
            torch.cuda.set_rng_state(saved, device)
        return
    saved = torch.get_rng_state()
    torch.set_rng_state(generator.get_state())
    try:
        yield
    finally:
        generator.set_state(torch.get_rng_state())
        torch.set_rng_state(saved)


class SeedDecisionTransformer(SeedBatch[DecisionTransformer[Any], Segments, DTTrainingStats]):
    """K seeds of :class:`DecisionTransformer` (see the module docstring).

    :param members: K ``DecisionTransformer`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type: type[DecisionTransformer[Any]] = DecisionTransformer

    def __init__(
        self,
        members: Sequence[DecisionTransformer[Any]],
        rng_states: Sequence[torch.Tensor] | None = None,
    ) -> None:
        super().__init__(members, rng_states)
        self.discrete = members[0].discrete
        self.model = self._stack([m.policy.model for m in members])
        self.optim = self._mirror_optimizer("optim")

    def _build_dataset(self, buffer: ReplayBuffer) -> SeedSampler[Segments]:
        """Seed 0's segment dataset (its observation normaliser, fitted on the data, copied
        to every member), sampled per seed with ``torch.randint`` as the plain dataset
        samples (not through a sample stream)."""
        dataset = self._members[0]._build_dataset(buffer)
        self._share_normalizer()
        return SeedSampler(dataset, self.rng)

    def _as_transitions(self, batch: RolloutBatchProtocol | Segments) -> Segments:
        if isinstance(batch, Segments):
            return batch
        raise TypeError(
            f"{type(self).__name__}: got a Tianshou {type(batch).__name__}; a seed batch "
            "trains on its own per-seed segments (update(buffer, batch_size) or OfflineTrainer)"
        )

    def predict(self, s: Segments) -> torch.Tensor:
        """Every seed's predictions ``(K, B, context, A)`` on its segments (every field of
        ``s`` ``(K, B, …)``)."""
        inputs = (s.obs, s.act, s.rtg, s.timesteps, s.mask)
        stack = self.model
        template = stack.template
        template.train(stack.training)
        params = stack.named_stacked()
        preds = []
        for k, generator in enumerate(self.rng):
            with generator_as_global(generator):
                preds.append(
                    functional_call(
                        template, {n: v[k] for n, v in params.items()}, tuple(x[k] for x in inputs)
                    )
                )
        return torch.stack(preds)

    def _update_with_batch(self, batch: Any) -> SeedBatchStats[DTTrainingStats]:
        s = self._as_transitions(batch)  # every field (K, B, …)
        pred = self.predict(s)
        loss = segment_loss(pred, s, discrete=self.discrete)  # (K,)
        lr = float(self.optim.optim.param_groups[0]["lr"])
        self.optim.step(loss.sum())

        accuracy: torch.Tensor | None = None
        if self.discrete:
            with torch.no_grad():
                hits = (pred.detach().argmax(-1) == s.act) & s.mask
                accuracy = hits.sum(dim=(1, 2)) / s.mask.sum(dim=(1, 2))
        return self._seed_stats(
            {
                "loss": loss,
                "accuracy": accuracy,
                "real_steps": s.mask.float().mean(dim=(1, 2)),
                "lr": torch.full((self.num_seeds,), lr, device=self.device),
            }
        )


class SeedDiscreteDecisionTransformer(SeedDecisionTransformer):
    """K seeds of :class:`DiscreteDecisionTransformer`.

    :param members: K ``DiscreteDecisionTransformer`` of one config.
    :param rng_states: each seed's generator state.
    """

    member_type = DiscreteDecisionTransformer

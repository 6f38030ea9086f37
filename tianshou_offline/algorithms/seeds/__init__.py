"""K independent seeds of an algorithm trained as one batched program.

::

    from tianshou_offline.algorithms import make_seed_batch

    batch = make_seed_batch("td3bc", obs_space, act_space, seeds=10, preset="small")
    batch.run_training(OfflineTrainerParams(buffer=buffer, ...))   # or batch.update(buffer, 256)
    for seed, policy in enumerate(batch.policies()): ...           # K Tianshou policies
    torch.save(batch.seed_state_dict(3), "seed3.pt")               # a plain checkpoint

See :mod:`tianshou_offline.algorithms.seeds.core` for the design; one module per algorithm
holds its batched update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

from tianshou_offline.algorithms.seeds.awac import SeedAWAC
from tianshou_offline.algorithms.seeds.bcq import SeedBCQ
from tianshou_offline.algorithms.seeds.core import (
    SeedBatch,
    SeedBatchStats,
    SeedRandom,
    SeedSampler,
    SeedStack,
)
from tianshou_offline.algorithms.seeds.cql import SeedCQL
from tianshou_offline.algorithms.seeds.crr import SeedCRR
from tianshou_offline.algorithms.seeds.discrete import (
    SeedDiscreteBCQ,
    SeedDiscreteCQL,
    SeedDiscreteCRR,
    SeedDiscreteImitation,
)
from tianshou_offline.algorithms.seeds.dt import (
    SeedDecisionTransformer,
    SeedDiscreteDecisionTransformer,
)
from tianshou_offline.algorithms.seeds.il import SeedImitationLearning
from tianshou_offline.algorithms.seeds.iql import SeedIQL
from tianshou_offline.algorithms.seeds.rebrac import SeedReBRAC
from tianshou_offline.algorithms.seeds.sac_n import SeedEDAC, SeedLBSAC, SeedSACN
from tianshou_offline.algorithms.seeds.td3_bc import SeedTD3Base, SeedTD3BC
from tianshou_offline.errors import DataValidationError

if TYPE_CHECKING:
    import gymnasium as gym

__all__ = [
    "SEED_BATCHES",
    "SeedAWAC",
    "SeedBCQ",
    "SeedBatch",
    "SeedBatchStats",
    "SeedCQL",
    "SeedCRR",
    "SeedDecisionTransformer",
    "SeedDiscreteBCQ",
    "SeedDiscreteCQL",
    "SeedDiscreteCRR",
    "SeedDiscreteDecisionTransformer",
    "SeedDiscreteImitation",
    "SeedEDAC",
    "SeedIQL",
    "SeedImitationLearning",
    "SeedLBSAC",
    "SeedRandom",
    "SeedReBRAC",
    "SeedSACN",
    "SeedSampler",
    "SeedStack",
    "SeedTD3BC",
    "SeedTD3Base",
    "make_seed_batch",
    "seed_batch_of",
]

SEED_BATCHES: Mapping[type, type[SeedBatch[Any, Any, Any]]] = MappingProxyType(
    {
        cls.member_type: cls
        for cls in (
            SeedTD3BC,
            SeedIQL,
            SeedCQL,
            SeedImitationLearning,
            SeedReBRAC,
            SeedCRR,
            SeedBCQ,
            SeedAWAC,
            SeedSACN,
            SeedEDAC,
            SeedLBSAC,
            SeedDiscreteImitation,
            SeedDiscreteBCQ,
            SeedDiscreteCQL,
            SeedDiscreteCRR,
            SeedDecisionTransformer,
            SeedDiscreteDecisionTransformer,
        )
    }
)
"""The seed-batched class of each plain algorithm class that has one."""


def seed_batch_of(
    members: Sequence[Any], rng_states: Sequence[torch.Tensor] | None = None
) -> SeedBatch[Any, Any, Any]:
    """The seed batch of K freshly built plain algorithms of one config (one per seed).

    :raises DataValidationError: the algorithm has no seed-batched form.
    """
    cls = SEED_BATCHES.get(type(members[0])) if members else None
    if cls is None:
        names = ", ".join(sorted(c.__name__ for c in SEED_BATCHES))
        raise DataValidationError(
            f"{type(members[0]).__name__ if members else 'no algorithm'}: no seed-batched form; "
            f"expected one of {names}"
        )
    return cls(members, rng_states)


def make_seed_batch(
    name: str,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    *,
    seeds: int | Sequence[int],
    preset: str | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> SeedBatch[Any, Any, Any]:
    """K seeds of the algorithm ``name`` as one batched program
    (:func:`~tianshou_offline.algorithms.registry.make_algorithm`'s arguments).

    Seed ``s`` is built as ``torch.manual_seed(s)`` then ``make_algorithm(...)`` (the global
    generator is left as it was) and samples with a generator in the state that leaves: on
    CPU, its trajectory is that single run's when it trains with ``update(buffer, B)``.

    :param seeds: K (the seeds ``0 … K−1``) or the seeds themselves.
    :raises DataValidationError: an unknown algorithm, preset, or one without a seed-batched
        form; no seeds.
    """
    from tianshou_offline.algorithms.registry import make_algorithm

    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise DataValidationError(f"seeds={seeds!r}: expected at least one seed")
    dev = torch.device(device)
    members = []
    states = []
    fork_devices = [dev] if dev.type == "cuda" else []
    for seed in seed_list:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            members.append(
                make_algorithm(
                    name, observation_space, action_space, preset=preset, device=dev, **overrides
                )
            )
            states.append(
                torch.cuda.get_rng_state(dev) if dev.type == "cuda" else torch.get_rng_state()
            )
    return seed_batch_of(members, states)

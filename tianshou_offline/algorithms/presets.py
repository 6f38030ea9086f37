"""Named presets: the only tables of algorithm settings.

A preset is a set of configs, one per algorithm it covers, each written as the fields that
differ from the config's defaults (the papers' settings), and the mini-batch size its users
train with. :func:`~tianshou_offline.algorithms.registry.make_algorithm` and
:func:`~tianshou_offline.algorithms.registry.make_config` take a preset's name:

- ``small`` — ``tianshou-offline grid``'s defaults and ``benchmarks/quality_table.py``'s
  column "ours": small networks (64 × 64 MLPs; CartPole-sized discrete nets).
- ``d4rl`` — the D4RL scale of ``examples/mujoco/d4rl_*.py``: the papers' networks and
  settings, as Tianshou's offline MuJoCo examples run them.
- ``atari`` — ``examples/atari/atari_*.py``, the settings of Tianshou's offline Atari
  examples.
- ``speed`` — ``benchmarks/train_speed.py``'s equal-footing settings (every side builds
  the same networks and runs the same number of passes).
- ``speed-cartpole``, ``speed-atari`` — the discrete speed benchmark's two settings, as
  Tianshou's CartPole offline tests and Atari offline examples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tianshou_offline.algorithms.config import ActionKind, AlgorithmConfig
from tianshou_offline.algorithms.continuous.awac import AWACConfig
from tianshou_offline.algorithms.continuous.edac import EDACConfig
from tianshou_offline.algorithms.continuous.lb_sac import LBSACConfig
from tianshou_offline.algorithms.continuous.sac_n import SACNConfig
from tianshou_offline.algorithms.continuous.td3_bc import TD3BCConfig
from tianshou_offline.algorithms.dt.algorithm import ContinuousDTConfig, DiscreteDTConfig
from tianshou_offline.errors import DataValidationError

__all__ = ["PRESETS", "Preset", "preset", "preset_config"]


@dataclass(frozen=True, kw_only=True)
class Preset:
    """A named set of algorithm configs."""

    name: str
    """The preset's name (``small``)."""
    description: str
    """What the settings are for, in one line."""
    configs: tuple[AlgorithmConfig, ...]
    """One config per algorithm (and action kind) the preset covers."""
    batch_size: int
    """Transitions per gradient step."""
    batch_sizes: Mapping[str, int] = field(default_factory=dict)
    """Per-algorithm batch sizes where they differ from :attr:`batch_size`."""

    def __post_init__(self) -> None:
        keys = [(c.action_kind, c.name) for c in self.configs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"preset {self.name!r}: an algorithm is listed twice: {keys}")

    def config(self, name: str, action_kind: ActionKind) -> AlgorithmConfig:
        """The config of ``name`` for ``action_kind`` actions.

        :raises DataValidationError: the preset does not cover that algorithm.
        """
        for c in self.configs:
            if c.name == name and c.action_kind == action_kind:
                return c
        covered = ", ".join(c.name for c in self.configs if c.action_kind == action_kind)
        raise DataValidationError(
            f"preset {self.name!r} has no {action_kind}-action algorithm {name!r}; it has "
            f"{covered or 'none'}"
        )

    def names(self, action_kind: ActionKind) -> tuple[str, ...]:
        """The algorithms of ``action_kind`` the preset covers."""
        return tuple(c.name for c in self.configs if c.action_kind == action_kind)

    def batch_size_of(self, name: str) -> int:
        """The batch size ``name`` trains with under this preset."""
        return self.batch_sizes.get(name, self.batch_size)


_SMALL = (64, 64)

PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        p.name: p
        for p in (
            Preset(
                name="small",
                description="tianshou-offline grid's defaults, the quality table's column ours",
                batch_size=256,
                batch_sizes={"lbsac": 1024, "dt": 64},
                configs=(
                    TD3BCConfig(hidden_sizes=_SMALL),
                    SACNConfig(hidden_sizes=_SMALL, normalize_obs=True, num_critics=10),
                    EDACConfig(hidden_sizes=_SMALL, normalize_obs=True, num_critics=10),
                    LBSACConfig(hidden_sizes=_SMALL, normalize_obs=True, batch_size=1024),
                    AWACConfig(hidden_sizes=_SMALL, normalize_obs=True),
                    # the target return is the task's: override target_return per task
                    ContinuousDTConfig(embed_dim=64, n_layers=2, n_heads=2, warmup_steps=1000),
                    DiscreteDTConfig(
                        embed_dim=64, n_layers=2, n_heads=2, context=20, lr=1e-3, weight_decay=1e-4
                    ),
                ),
            ),
            Preset(
                name="d4rl",
                description="the D4RL scale of examples/mujoco (the papers' settings)",
                batch_size=256,
                batch_sizes={"lbsac": 10_000, "dt": 64},
                configs=(
                    TD3BCConfig(),
                    SACNConfig(hidden_sizes=(256, 256, 256)),
                    EDACConfig(hidden_sizes=(256, 256, 256)),
                    LBSACConfig(hidden_sizes=(256, 256, 256)),
                    AWACConfig(),
                    ContinuousDTConfig(),
                ),
            ),
            Preset(
                name="speed",
                description="benchmarks/train_speed.py: every side the same networks and passes",
                batch_size=256,
                configs=(TD3BCConfig(normalize_obs=False),),
            ),
        )
    }
)
"""Every preset by name."""


def preset(name: str) -> Preset:
    """The preset called ``name``.

    :raises DataValidationError: no such preset (the message lists them).
    """
    found = PRESETS.get(name)
    if found is None:
        raise DataValidationError(f"preset {name!r}: expected one of {', '.join(PRESETS)}")
    return found


def preset_config(name: str, algorithm: str, action_kind: ActionKind) -> AlgorithmConfig:
    """The config of ``algorithm`` in the preset ``name``.

    :raises DataValidationError: no such preset, or the preset does not cover the algorithm.
    """
    return preset(name).config(algorithm, action_kind)

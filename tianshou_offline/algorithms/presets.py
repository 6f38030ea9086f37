"""Named presets: the only tables of algorithm settings.

A preset is a set of configs, one per algorithm it covers, each written as the fields that
differ from the config's defaults (the papers' settings), and the mini-batch size its users
train with. :func:`~tianshou_offline.algorithms.registry.make_algorithm` and
:func:`~tianshou_offline.algorithms.registry.make_config` take a preset's name:

- ``small`` — ``tianshou-offline grid``'s defaults and ``benchmarks/quality_table.py``'s
  column "ours": small networks (64 × 64 MLPs; CartPole-sized discrete nets).
- ``d4rl`` — the quality table's D4RL scale: ``small``'s settings with 256 × 256
  continuous networks.
- ``mujoco`` — ``examples/mujoco/d4rl_*.py``: the papers' networks and settings, as
  Tianshou's offline MuJoCo examples run them.
- ``atari`` — ``examples/atari/atari_*.py``: Tianshou's offline Atari examples' settings.
- ``speed`` — ``benchmarks/train_speed.py``'s equal-footing settings (every side builds
  the same networks and runs the same number of passes).
- ``speed-cartpole``, ``speed-atari`` — the discrete speed benchmark's two settings, as
  Tianshou's CartPole offline tests and Atari offline examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tianshou_offline.algorithms.config import ActionKind, AlgorithmConfig
from tianshou_offline.algorithms.continuous.awac import AWACConfig
from tianshou_offline.algorithms.continuous.bcq import BCQConfig
from tianshou_offline.algorithms.continuous.cql import CQLConfig
from tianshou_offline.algorithms.continuous.crr import CRRConfig
from tianshou_offline.algorithms.continuous.edac import EDACConfig
from tianshou_offline.algorithms.continuous.il import ImitationConfig
from tianshou_offline.algorithms.continuous.iql import IQLConfig
from tianshou_offline.algorithms.continuous.lb_sac import LBSACConfig
from tianshou_offline.algorithms.continuous.rebrac import ReBRACConfig
from tianshou_offline.algorithms.continuous.sac_n import SACNConfig
from tianshou_offline.algorithms.continuous.td3_bc import TD3BCConfig
from tianshou_offline.algorithms.discrete.bcq import DiscreteBCQConfig
from tianshou_offline.algorithms.discrete.cql import DiscreteCQLConfig
from tianshou_offline.algorithms.discrete.crr import DiscreteCRRConfig
from tianshou_offline.algorithms.discrete.il import DiscreteImitationConfig
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
    variants: Mapping[str, AlgorithmConfig] = field(default_factory=dict)
    """Further rows under names of their own (``cql-dqn``: DiscreteCQL in another form)."""
    batch_size: int
    """Transitions per gradient step."""
    batch_sizes: Mapping[str, int] = field(default_factory=dict)
    """Batch sizes that differ from :attr:`batch_size`, by action kind (``"discrete"``), by
    name (``"dt"``) or by kind and name (``"discrete/cql"``)."""

    def __post_init__(self) -> None:
        keys = [(c.action_kind, c.name) for c in self.configs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"preset {self.name!r}: an algorithm is listed twice: {keys}")

    def config(self, name: str, action_kind: ActionKind) -> AlgorithmConfig:
        """The config of ``name`` (an algorithm or a variant) for ``action_kind`` actions.

        :raises DataValidationError: the preset does not cover that algorithm.
        """
        for c in self.configs:
            if c.name == name and c.action_kind == action_kind:
                return c
        variant = self.variants.get(name)
        if variant is not None and variant.action_kind == action_kind:
            return variant
        raise DataValidationError(
            f"preset {self.name!r} has no {action_kind}-action algorithm {name!r}; it has "
            f"{', '.join(self.names(action_kind)) or 'none'}"
        )

    def names(self, action_kind: ActionKind) -> tuple[str, ...]:
        """The algorithms and variants of ``action_kind`` the preset covers."""
        return tuple(c.name for c in self.configs if c.action_kind == action_kind) + tuple(
            n for n, c in self.variants.items() if c.action_kind == action_kind
        )

    def batch_size_of(self, name: str, action_kind: ActionKind) -> int:
        """The batch size ``name`` trains with under this preset: :attr:`batch_sizes` by
        kind and name, by name, by kind, else :attr:`batch_size`."""
        sizes = self.batch_sizes
        for key in (f"{action_kind}/{name}", name, action_kind):
            if key in sizes:
                return sizes[key]
        return self.batch_size


_SMALL = (64, 64)
"""The small scale's MLP widths (continuous actions)."""
_CARTPOLE = (64,)
"""Tianshou's CartPole offline tests' networks: an MLP trunk of 64, heads of 64."""

_SMALL_PRESET = Preset(
    name="small",
    description="tianshou-offline grid's defaults, the quality table's column ours",
    batch_size=256,
    batch_sizes={"discrete": 64, "lbsac": 1024, "dt": 64},
    configs=(
        ImitationConfig(hidden_sizes=_SMALL),
        BCQConfig(hidden_sizes=_SMALL, vae_hidden_sizes=_SMALL, policy_num_sampled_actions=10),
        CQLConfig(hidden_sizes=_SMALL, alpha_lr=1e-4),
        CRRConfig(hidden_sizes=_SMALL, num_critics=1),
        TD3BCConfig(hidden_sizes=_SMALL),
        IQLConfig(hidden_sizes=_SMALL),
        ReBRACConfig(hidden_sizes=_SMALL),
        DiscreteImitationConfig(lr=1e-3, trunk_sizes=_CARTPOLE, hidden_sizes=_CARTPOLE),
        # d3rlpy's share_encoder layout: linear Q and imitation heads on one trunk
        DiscreteBCQConfig(
            lr=1e-3,
            n_step_return_horizon=3,
            target_update_freq=100,
            trunk_sizes=(64, 64),
            hidden_sizes=(),
        ),
        DiscreteCQLConfig(
            lr=1e-3,
            n_step_return_horizon=3,
            target_update_freq=100,
            trunk_sizes=_CARTPOLE,
            hidden_sizes=_CARTPOLE,
        ),
        DiscreteCRRConfig(
            lr=1e-3,
            target_update_freq=100,
            trunk_sizes=_CARTPOLE,
            hidden_sizes=_CARTPOLE,
        ),
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
    variants={
        # DiscreteCQL in d3rlpy's form: one quantile, double DQN, w = 1/2
        "cql-dqn": DiscreteCQLConfig(
            lr=1e-3,
            n_step_return_horizon=3,
            target_update_freq=100,
            min_q_weight=0.5,
            num_quantiles=1,
            double_q=True,
            trunk_sizes=_CARTPOLE,
            hidden_sizes=_CARTPOLE,
        ),
        # AWAC with d3rlpy's weights B · softmax(A / λ) over the batch (no clip)
        "awac-softmax": AWACConfig(hidden_sizes=_SMALL, normalize_obs=True, normalize_weights=True),
    },
)
"""The small scale (see the module doc)."""


def _d4rl_scale(small: Preset) -> Preset:
    """The quality table's D4RL scale: the small scale's settings with 256 × 256 continuous
    networks."""
    wide = (256, 256)

    def widen(c: AlgorithmConfig) -> AlgorithmConfig:
        if c.action_kind != "continuous":
            return c
        return c.replace(**{f: wide for f in ("hidden_sizes", "vae_hidden_sizes") if hasattr(c, f)})

    return dataclasses.replace(
        small,
        name="d4rl",
        description="the quality table's D4RL scale",
        configs=tuple(widen(c) for c in small.configs),
        variants={n: widen(c) for n, c in small.variants.items()},
    )


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        p.name: p
        for p in (
            _SMALL_PRESET,
            _d4rl_scale(_SMALL_PRESET),
            Preset(
                name="mujoco",
                description="examples/mujoco: the papers' settings, as Tianshou's D4RL examples",
                batch_size=256,
                batch_sizes={"continuous/rebrac": 1024, "lbsac": 10_000, "dt": 64},
                configs=(
                    ImitationConfig(),
                    BCQConfig(),
                    CQLConfig(alpha_lr=1e-4),
                    CRRConfig(),
                    TD3BCConfig(),
                    IQLConfig(),
                    ReBRACConfig(),
                    SACNConfig(hidden_sizes=(256, 256, 256)),
                    EDACConfig(hidden_sizes=(256, 256, 256)),
                    LBSACConfig(hidden_sizes=(256, 256, 256)),
                    AWACConfig(),
                    ContinuousDTConfig(),
                ),
            ),
            Preset(
                name="atari",
                description="examples/atari, as Tianshou's offline Atari examples",
                batch_size=32,
                batch_sizes={"dt": 128},
                configs=(
                    DiscreteImitationConfig(),
                    DiscreteBCQConfig(),
                    DiscreteCQLConfig(target_update_freq=500),
                    DiscreteCRRConfig(target_update_freq=500),
                    DiscreteDTConfig(),
                ),
            ),
            Preset(
                name="speed",
                description="benchmarks/train_speed.py: every side the same networks and passes",
                batch_size=256,
                batch_sizes={"dt": 64},
                configs=(
                    ImitationConfig(),
                    BCQConfig(hidden_sizes=(256, 256), vae_hidden_sizes=(256, 256)),
                    CQLConfig(
                        alpha_lr=1e-4,
                        cql_alpha_lr=1e-4,
                        cql_weight=1.0,
                        with_lagrange=True,
                        backup_entropy=True,
                        max_grad_norm=1.0,
                    ),
                    CRRConfig(num_critics=1),
                    TD3BCConfig(normalize_obs=False),
                    IQLConfig(normalize_obs=False),
                    ReBRACConfig(hidden_sizes=(256, 256)),
                    SACNConfig(),
                    EDACConfig(),
                    # d3rlpy's AWAC: a state-dependent std, batch-softmax weights
                    AWACConfig(conditioned_std=True, normalize_weights=True),
                    # the paper's MuJoCo network: K = 20, 3 blocks of 128 units, 1 head
                    ContinuousDTConfig(),
                ),
                variants={
                    # Tianshou 2.0.1's BCQ target: unperturbed VAE samples
                    "bcq-ts-target": BCQConfig(
                        hidden_sizes=(256, 256),
                        vae_hidden_sizes=(256, 256),
                        perturb_target_actions=False,
                    ),
                },
            ),
            Preset(
                name="speed-cartpole",
                description="benchmarks' discrete speed test, as Tianshou's CartPole offline tests",
                batch_size=64,
                batch_sizes={"discrete/cql": 32},
                configs=(
                    DiscreteImitationConfig(lr=1e-3, trunk_sizes=_CARTPOLE, hidden_sizes=_CARTPOLE),
                    DiscreteBCQConfig(
                        lr=3e-4,
                        n_step_return_horizon=3,
                        target_update_freq=320,
                        unlikely_action_threshold=0.6,
                        trunk_sizes=_CARTPOLE,
                        hidden_sizes=_CARTPOLE,
                    ),
                    DiscreteCQLConfig(
                        lr=3e-3,
                        n_step_return_horizon=3,
                        target_update_freq=500,
                        double_q=True,
                        trunk_sizes=_CARTPOLE,
                        hidden_sizes=_CARTPOLE,
                    ),
                    DiscreteCRRConfig(
                        lr=7e-4,
                        target_update_freq=320,
                        trunk_sizes=_CARTPOLE,
                        hidden_sizes=_CARTPOLE,
                    ),
                ),
            ),
            Preset(
                name="speed-atari",
                description="benchmarks' discrete speed test, as Tianshou's Atari examples",
                batch_size=32,
                configs=(
                    DiscreteImitationConfig(),
                    DiscreteBCQConfig(),
                    DiscreteCQLConfig(target_update_freq=500, double_q=True),
                    DiscreteCRRConfig(target_update_freq=500),
                ),
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

"""What a built algorithm is, as plain data: its classes, every network's parameter shapes,
every module's scalar settings and every optimizer's hyperparameters.

``tests/algorithms/algorithm_rows.json`` holds the fingerprints of the algorithms the grid, the
quality table, the speed benchmarks and the examples built before their settings moved into
``tianshou_offline.algorithms.presets``; ``tests/algorithms/test_configs.py`` checks that the
presets build the same algorithms.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tianshou_offline.algorithms.core import GradientStep

_SCALARS = (bool, int, float, str, type(None))
_SKIP = {"training", "lr_scheduler_factory", "observation_space", "action_space"}


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def fingerprint(algorithm: torch.nn.Module) -> dict[str, Any]:
    """Classes, parameter shapes, scalar settings and optimizer settings of ``algorithm``."""
    policy = getattr(algorithm, "policy", None)
    settings: dict[str, Any] = {}
    for prefix, module in algorithm.named_modules():
        for key, value in vars(module).items():
            if key.startswith("_") or key in _SKIP:
                continue
            if isinstance(value, _SCALARS) or (
                isinstance(value, tuple) and all(isinstance(v, _SCALARS) for v in value)
            ):
                settings[f"{prefix}.{key}" if prefix else key] = _plain(value)
    optimizers: dict[str, Any] = {}
    for key, value in vars(algorithm).items():
        if isinstance(value, GradientStep):
            group = value.optim.param_groups[0]
            optimizers[key] = {
                "type": type(value.optim).__name__,
                "lr": group["lr"],
                "betas": list(group.get("betas", ())),
                "weight_decay": group.get("weight_decay"),
                "max_grad_norm": value._max_grad_norm,
                "num_params": sum(p.numel() for p in value.params),
            }
    return {
        "algorithm": type(algorithm).__name__,
        "policy": type(policy).__name__,
        "parameters": {
            k: list(v.shape) for k, v in algorithm.state_dict().items() if isinstance(v, torch.Tensor)
        },
        "n_step": getattr(algorithm, "n_step", None),
        "lr_schedulers": [type(x).__name__ for x in getattr(algorithm, "lr_schedulers", [])],
        "settings": dict(sorted(settings.items())),
        "optimizers": dict(sorted(optimizers.items())),
    }

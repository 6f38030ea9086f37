"""``compile=True`` (``OfflineAlgorithmCore.compile_step``): the compiled step computes what the
eager step computes, reaches every algorithm through its config, and falls back to the eager
step (with one logged line) when compiling fails."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from tianshou.utils.torch_utils import policy_within_training_step

from tests.helpers.configs import OBS, SPACES
from tests.helpers.continuous import make, synthetic_buffer
from tianshou_offline.algorithms.registry import CONFIG_CLASSES, make_algorithm


def train(
    name: str, backend: str | Callable[..., Any] | None, steps: int = 6
) -> tuple[Any, list[dict[str, Any]]]:
    torch.manual_seed(0)
    algo = make(name)
    if backend is not None:
        assert algo.compile_step(backend=backend)
    buffer = synthetic_buffer()
    with policy_within_training_step(algo.policy):
        losses = [algo.update(buffer, 32).get_loss_stats_dict() for _ in range(steps)]
    return algo, losses


def assert_same_run(
    a: tuple[Any, list[dict[str, Any]]], b: tuple[Any, list[dict[str, Any]]]
) -> None:
    (algo_a, losses_a), (algo_b, losses_b) = a, b
    for step_a, step_b in zip(losses_a, losses_b, strict=True):
        for key, value in step_a.items():
            other = step_b[key]
            assert (value is None) == (other is None), key
            if value is not None:
                assert math.isclose(value, other, rel_tol=1e-5, abs_tol=1e-6), (key, value, other)
    for (key, p), q in zip(algo_a.state_dict().items(), algo_b.state_dict().values(), strict=False):
        if isinstance(p, torch.Tensor):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize(
    ("name", "backend"),
    [("td3bc", "aot_eager"), ("il", "inductor")],
    ids=["td3bc-aot_eager", "il-inductor"],
)
def test_compiled_step_equals_the_eager_step(name: str, backend: str) -> None:
    """Six steps (TD3+BC: critic-only and actor steps) with compiled networks: the same
    losses and parameters as the eager run to float tolerance (inductor: generated kernels,
    one MLP to keep the test short; aot_eager: the traced graphs of two networks, a target
    copy and the critic ensemble's custom autograd function)."""
    eager = train(name, None)
    compiled = train(name, backend)
    assert compiled[0].compiled
    assert_same_run(eager, compiled)


def test_a_failing_compile_falls_back_to_the_eager_step(caplog: pytest.LogCaptureFixture) -> None:
    """A backend that fails on the first step: the state is put back, one warning is logged
    and the run is the eager run. Checked to fail without the state restore (the critic had
    stepped before the actor's compile failed)."""

    graphs: list[torch.fx.GraphModule] = []

    def failing_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        graphs.append(gm)
        if len(graphs) == 4:  # the actor's forward, after the critic's optimizer step
            raise RuntimeError("this backend cannot compile the actor")
        return gm.forward

    eager = train("td3bc", None)
    with caplog.at_level(logging.WARNING, logger="tianshou_offline.algorithms.core"):
        fallback = train("td3bc", failing_backend)
    assert not fallback[0].compiled
    assert [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert_same_run(eager, fallback)


@pytest.mark.parametrize(
    "cls", CONFIG_CLASSES, ids=[f"{c.action_kind}-{c.name}" for c in CONFIG_CLASSES]
)
def test_compile_reaches_every_algorithm_through_its_config(cls: Any) -> None:
    algo: Any = make_algorithm(cls.name, OBS, SPACES[cls.action_kind], compile=True)
    assert algo.compiled and algo.networks()
    plain: Any = make_algorithm(cls.name, OBS, SPACES[cls.action_kind])
    assert not plain.compiled
    graphs: Any = make_algorithm(
        cls.name, OBS, SPACES[cls.action_kind], compile=True, cuda_graphs=True
    )
    assert graphs.compiled and graphs._compiled["mode"] is None  # no CUDA graphs on a CPU

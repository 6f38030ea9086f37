"""The short optimizer path (tianshou_offline.algorithms._optim) computes exactly what
torch.optim.Adam/AdamW compute, and falls back to ``optimizer.step()`` where it would not."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import pytest
import torch
from torch import nn

from tianshou_offline.algorithms._optim import FastStep, prefer_fused, zero_grad


def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))


def _train(
    net: nn.Sequential,
    optim: torch.optim.Optimizer,
    step: Callable[[], None],
    steps: int = 6,
    frozen_bias: bool = False,
) -> None:
    gen = torch.Generator().manual_seed(1)
    for i in range(steps):
        x = torch.randn(8, 5, generator=gen)
        zero_grad(list(net.parameters()))
        out = net(x)
        loss = out.pow(2).mean()
        loss.backward()
        if frozen_bias and i % 2:
            net[2].bias.grad = None  # a parameter without a gradient this step
        step()


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.Adam(p, lr=1e-2),
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
        lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.8, 0.9), eps=1e-6, maximize=True),
    ],
)
@pytest.mark.parametrize("frozen_bias", [False, True])
def test_fast_step_equals_torch_step(
    make: Callable[[object], torch.optim.Optimizer], frozen_bias: bool
) -> None:
    ref_net, fast_net = _net(), _net()
    ref_opt = make(ref_net.parameters())
    fast_opt = make(fast_net.parameters())
    prefer_fused(ref_opt, ref_net.parameters())
    prefer_fused(fast_opt, fast_net.parameters())
    assert fast_opt.param_groups[0]["fused"]
    fast = FastStep(fast_opt)
    long_path: list[int] = []
    torch_step = fast_opt.step

    def counted_step() -> None:
        long_path.append(1)
        torch_step()

    cast(Any, fast_opt).step = counted_step  # count the calls that take the long path
    _train(ref_net, ref_opt, ref_opt.step, frozen_bias=frozen_bias)
    _train(fast_net, fast_opt, fast, frozen_bias=frozen_bias)
    assert len(long_path) == 1  # only the first step (it creates the state)
    for a, b in zip(ref_net.parameters(), fast_net.parameters(), strict=True):
        assert torch.equal(a, b)
    ref_state, fast_state = ref_opt.state_dict(), fast_opt.state_dict()
    for k, s in ref_state["state"].items():
        for name, value in s.items():
            assert torch.equal(value, fast_state["state"][k][name]), name


def test_fast_step_follows_lr_schedule_and_loaded_state() -> None:
    ref_net, fast_net = _net(), _net()
    ref_opt = torch.optim.Adam(ref_net.parameters(), lr=1e-2, fused=True)
    fast_opt = torch.optim.Adam(fast_net.parameters(), lr=1e-2, fused=True)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=2, gamma=0.5)
    fast_sched = torch.optim.lr_scheduler.StepLR(fast_opt, step_size=2, gamma=0.5)
    fast = FastStep(fast_opt)

    def ref_step() -> None:
        ref_opt.step()
        ref_sched.step()

    def fast_step() -> None:
        fast()
        fast_sched.step()

    _train(ref_net, ref_opt, ref_step)
    _train(fast_net, fast_opt, fast_step)
    assert fast_opt.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**3)
    # a state_dict loaded into the optimizer replaces the moments: the fast path uses them
    snapshot = copy.deepcopy(ref_opt.state_dict())
    net_snapshot = copy.deepcopy(ref_net.state_dict())
    fast_net.load_state_dict(net_snapshot)
    fast_opt.load_state_dict(snapshot)
    _train(ref_net, ref_opt, ref_step, steps=3)
    _train(fast_net, fast_opt, fast_step, steps=3)
    for a, b in zip(ref_net.parameters(), fast_net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_fast_step_falls_back_to_optimizer_step() -> None:
    calls: list[int] = []
    for make in (
        lambda p: torch.optim.Adam(p, lr=1e-2, fused=True, amsgrad=True),
        lambda p: torch.optim.Adam(p, lr=1e-2),  # not fused
        lambda p: torch.optim.SGD(p, lr=1e-2),
    ):
        net = _net()
        opt = make(net.parameters())
        handle = opt.register_step_pre_hook(lambda *_: calls.append(1))
        fast = FastStep(opt)
        before = [p.detach().clone() for p in net.parameters()]
        _train(net, opt, fast, steps=2)
        handle.remove()
        assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert len(calls) == 6  # every step went through optimizer.step()
    # hooks force the long path too
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, fused=True)
    fast = FastStep(opt)
    seen: list[int] = []
    opt.register_step_post_hook(lambda *_: seen.append(1))
    _train(net, opt, fast, steps=3)
    assert len(seen) == 3

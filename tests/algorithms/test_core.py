"""What the algorithm core guarantees for every algorithm, continuous and discrete:

- a resumed run continues as the uninterrupted run (the step count, the actor-update phase,
  the target schedule and learning-rate schedules are saved with ``state_dict``);
- target networks stay in eval mode;
- ``n_step > 1`` is honoured on both entry points (the dataset and Tianshou's numpy batches)
  or the batch is rejected, never silently one-step;
- a ``PrioritizedReplayBuffer`` is rejected instead of being sampled uniformly.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.algorithm.optim import (
    AdamOptimizerFactory,
    LRSchedulerFactory,
    LRSchedulerFactoryLinear,
)
from tianshou.data import (
    PrioritizedReplayBuffer,
    PrioritizedVectorReplayBuffer,
    ReplayBuffer,
)
from tianshou.utils.torch_utils import policy_within_training_step, torch_train_mode
from torch.optim.lr_scheduler import LRScheduler, StepLR

from tests.helpers.continuous import make, synthetic_buffer
from tianshou_offline.algorithms import (
    DiscreteActorPolicy,
    DiscreteBCQ,
    DiscreteBCQPolicy,
    DiscreteCQL,
    DiscreteCRR,
    DualHeadNet,
    ImitationLearning,
    MLPTrunk,
    QuantileQNet,
    QValuePolicy,
)
from tianshou_offline.algorithms.core import OfflineAlgorithmCore
from tianshou_offline.data.columns import buffer_from_columns

Algorithm = OfflineAlgorithmCore[Any, Any, Any, Any]
DISCRETE_SPACE = gym.spaces.Discrete(3)


class _StepLRFactory(LRSchedulerFactory):
    def create_scheduler(self, optim: torch.optim.Optimizer) -> LRScheduler:
        return StepLR(optim, step_size=2, gamma=0.5)


def discrete_buffer(n: int = 120, seed: int = 0) -> ReplayBuffer:
    """Float observations (4,), actions in [0, 3), episodes of 10 steps ending alternately in
    a termination and a truncation."""
    rng = np.random.default_rng(seed)
    terminated = np.zeros(n, bool)
    truncated = np.zeros(n, bool)
    terminated[9::20] = True
    truncated[19::20] = True
    return buffer_from_columns(
        {
            "obs": rng.normal(size=(n, 4)).astype(np.float32),
            "act": rng.integers(0, 3, size=n),
            "rew": rng.normal(size=n),
            "terminated": terminated,
            "truncated": truncated,
        }
    )


def make_discrete(name: str, seed: int, **overrides: Any) -> Algorithm:
    torch.manual_seed(seed)
    optim = AdamOptimizerFactory(lr=1e-3)
    if name == "dbcq":
        net = DualHeadNet(MLPTrunk(4, [16]), 3, [16])
        policy = DiscreteBCQPolicy(model=net, action_space=DISCRETE_SPACE)
        kw: dict[str, Any] = {"target_update_freq": 3, **overrides}
        return DiscreteBCQ(policy=policy, optim=optim, **kw)
    if name == "dcql":
        qnet = QuantileQNet(MLPTrunk(4, [16]), 3, num_quantiles=8)
        kw = {"target_update_freq": 3, **overrides}
        return DiscreteCQL(
            policy=QValuePolicy(model=qnet, action_space=DISCRETE_SPACE), optim=optim, **kw
        )
    if name == "dcrr":
        net = DualHeadNet(MLPTrunk(4, [16]), 3, [16])
        actor = DiscreteActorPolicy(actor=net, action_space=DISCRETE_SPACE, logits_index=0)
        kw = {"target_update_freq": 3, **overrides}
        return DiscreteCRR(policy=actor, optim=optim, **kw)
    raise ValueError(name)


def make_any(name: str, seed: int) -> tuple[Algorithm, ReplayBuffer]:
    """An algorithm whose next update depends on its step count, and its data."""
    if name.startswith("d"):
        return make_discrete(name, seed), discrete_buffer()
    torch.manual_seed(seed)
    if name == "td3bc":  # policy delay 2
        return make("td3bc"), synthetic_buffer()
    if name == "crr":  # hard target copies every 3 steps
        return make("crr", tau=1.0, target_update_freq=3), synthetic_buffer()
    if name in ("il_lr_schedule", "il_linear_schedule"):
        # StepLR: the learning rate halves every 2 steps; Tianshou's linear decay keeps numpy
        # floats in its state (saved as Python floats, so weights-only loading reads them)
        algo = make("il")
        assert isinstance(algo, ImitationLearning)
        schedule: LRSchedulerFactory = (
            _StepLRFactory()
            if name == "il_lr_schedule"
            else LRSchedulerFactoryLinear(
                max_epochs=1, epoch_num_steps=20, collection_step_num_env_steps=1
            )
        )
        il = ImitationLearning(
            policy=algo.policy,
            optim=AdamOptimizerFactory(lr=1e-2).with_lr_scheduler_factory(schedule),
        )
        return il, synthetic_buffer()
    raise ValueError(name)


def _updates(algo: Algorithm, buffer: ReplayBuffer, steps: int, seed: int) -> list[Any]:
    torch.manual_seed(seed)
    with policy_within_training_step(algo.policy):
        return [algo.update(buffer, 16) for _ in range(steps)]


def _checkpoint(algo: Algorithm) -> dict[str, Any]:
    """``state_dict`` through a file, read back as the examples read it (weights only)."""
    data = io.BytesIO()
    saved: Any = algo  # Tianshou's Algorithm.state_dict (with optimizers) is untyped
    torch.save(saved.state_dict(), data)
    data.seek(0)
    loaded: dict[str, Any] = torch.load(data, weights_only=True)
    return loaded


def _tensors(algo: Algorithm) -> dict[str, torch.Tensor]:
    saved: Any = algo
    state: dict[str, Any] = saved.state_dict()
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


RESUMABLE = ["td3bc", "crr", "il_lr_schedule", "il_linear_schedule", "dbcq", "dcql", "dcrr"]


@pytest.mark.parametrize("name", RESUMABLE)
def test_resume_continues_as_the_uninterrupted_run(name: str) -> None:
    """5 steps, checkpoint, 4 more steps == the same 5 steps, a fresh algorithm loaded from
    the checkpoint, 4 more steps. 5 is odd and not a multiple of 3: a resume that restarted the
    step count would update TD3+BC's actor, copy the discrete targets at once and shift CRR's
    target copies and the learning-rate schedule."""
    straight, buffer = make_any(name, 0)
    straight.process_buffer(buffer)
    _updates(straight, buffer, 5, seed=1)
    checkpoint = _checkpoint(straight)
    assert checkpoint["_extra_state"]["num_updates"] == 5
    expected = _updates(straight, buffer, 4, seed=2)

    resumed, _ = make_any(name, 7)  # other initial weights: everything comes from the file
    resumed.load_state_dict(checkpoint)
    assert resumed.num_updates == 5
    resumed.process_buffer(buffer)
    got = _updates(resumed, buffer, 4, seed=2)

    assert resumed.num_updates == straight.num_updates == 9
    a, b = _tensors(straight), _tensors(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for s_expected, s_got in zip(expected, got, strict=True):
        e, g = s_expected.get_loss_stats_dict(), s_got.get_loss_stats_dict()
        assert e == g
    if name == "il_lr_schedule":
        lr = resumed.lr_schedulers[0].get_last_lr()[0]
        assert lr == pytest.approx(1e-2 * 0.5 ** (9 // 2))
    if name == "il_linear_schedule":
        lr = resumed.lr_schedulers[0].get_last_lr()[0]
        assert lr == pytest.approx(1e-2 * (1 - 9 / 20))


def test_a_checkpoint_without_the_step_count_still_loads(caplog: pytest.LogCaptureFixture) -> None:
    algo, buffer = make_any("dbcq", 0)
    _updates(algo, buffer, 2, seed=1)
    checkpoint = _checkpoint(algo)
    del checkpoint["_extra_state"]  # written before the step count was saved
    fresh, _ = make_any("dbcq", 1)
    with caplog.at_level(logging.WARNING):
        fresh.load_state_dict(checkpoint)
    assert "no step count" in caplog.text
    assert fresh.num_updates == 0


# --------------------------------------------------------------------------- eval mode

WITH_TARGETS: list[tuple[str, Callable[[], tuple[Algorithm, ReplayBuffer]]]] = [
    *((n, lambda n=n: (make(n), synthetic_buffer())) for n in ("bcq", "cql", "crr", "td3bc")),
    *((n, lambda n=n: (make_discrete(n, 0), discrete_buffer())) for n in ("dbcq", "dcql", "dcrr")),
]


@pytest.mark.parametrize(("name", "build"), WITH_TARGETS, ids=[n for n, _ in WITH_TARGETS])
def test_targets_stay_in_eval_mode(
    name: str, build: Callable[[], tuple[Algorithm, ReplayBuffer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    algo, buffer = build()
    targets = [t for _, t in algo._target_pairs]
    assert targets

    def all_eval() -> bool:
        return all(not m.training for t in targets for m in t.modules())

    assert all_eval() and algo.training
    seen_training_sources: list[bool] = []
    original = algo._update_with_batch

    def spy(batch: Any) -> Any:
        assert all_eval()  # during the update as well
        seen_training_sources.append(all(s.training for s, _ in algo._target_pairs))
        return original(batch)

    monkeypatch.setattr(algo, "_update_with_batch", spy)
    _updates(algo, buffer, 2, seed=0)
    assert seen_training_sources == [True, True]
    assert all_eval()
    assert algo._all_in_train_mode()  # the fast path: no mode switch per step
    algo.eval()
    algo.train()
    assert all_eval()
    with torch_train_mode(algo, enabled=False):
        _updates(algo, buffer, 1, seed=0)  # switches to training mode for the step
        assert not algo.training and all_eval()
    assert algo.training and all_eval()


# --------------------------------------------------------------------------- n-step


def _continuous_n_step(n: int) -> Algorithm:
    return make("td3bc", n_step_return_horizon=n, gamma=0.9)


def _discrete_n_step(n: int) -> Algorithm:
    return make_discrete("dcrr", 0, n_step_return_horizon=n, gamma=0.9, target_update_freq=0)


@pytest.mark.parametrize(
    ("build", "buffer"),
    [(_continuous_n_step, synthetic_buffer), (_discrete_n_step, discrete_buffer)],
    ids=["continuous", "discrete"],
)
def test_n_step_targets_on_tianshous_batch_path(
    build: Callable[[int], Algorithm], buffer: Callable[[], ReplayBuffer]
) -> None:
    """Tianshou's path (``_preprocess_batch`` then ``_update_with_batch``) gets the same n-step
    targets as the dataset; a bare numpy batch is rejected for n > 1, accepted for n = 1."""
    buf = buffer()
    algo = build(3)
    dataset = algo.dataset_for(buf)
    np.random.seed(0)
    batch, indices = buf.sample(32)
    assert np.array_equal(buf.sample_indices(0), np.arange(len(buf)))  # positions == rows
    via_tianshou = algo._as_transitions(algo._preprocess_batch(batch, buf, indices))
    via_dataset = dataset.gather(torch.as_tensor(indices))
    for field in ("rew", "discount", "terminated", "obs_next", "obs", "act"):
        torch.testing.assert_close(getattr(via_tianshou, field), getattr(via_dataset, field))
    assert (via_dataset.discount < 0.9 - 1e-6).any()  # n-step discounts, not γ

    fresh_batch, _ = buf.sample(8)
    with policy_within_training_step(algo.policy), pytest.raises(ValueError, match="n_step=3"):
        algo._update_with_batch(fresh_batch)
    one_step = build(1)
    with policy_within_training_step(one_step.policy):
        one_step._update_with_batch(fresh_batch)  # one-step fields are the targets
    with pytest.raises(ValueError, match="n_step_return_horizon=0"):
        build(0)


def test_n_step_target_of_an_update_is_the_n_step_return(monkeypatch: pytest.MonkeyPatch) -> None:
    """Discrete CRR with n = 3, γ = 0.9: the update's TD target is
    ``Σ_{k<m} γ^k r_{t+k} + γ^m (1 − d) V(s_{t+m})``, walked here through the episode."""
    buf = discrete_buffer()
    algo = _discrete_n_step(3)
    assert isinstance(algo, DiscreteCRR)
    rows = np.array([0, 7, 8, 9, 15, 18, 19, 25])
    gamma, n = 0.9, 3
    expected = []
    with torch.no_grad():
        for t in rows:
            ret, k, last = 0.0, 0, t
            while k < n:
                ret += gamma**k * float(buf.rew[t + k])
                last = t + k
                k += 1
                if buf.terminated[last] or buf.truncated[last]:
                    break
            bootstrap = 0.0
            if not buf.terminated[last]:
                logits, q = algo.net(torch.as_tensor(buf[np.array([last])].obs_next))
                bootstrap = float((torch.softmax(logits, 1) * q).sum())
            expected.append(ret + gamma**k * bootstrap)
    dataset = algo.dataset_for(buf)
    captured: list[torch.Tensor] = []
    monkeypatch.setattr(algo, "_extend_stats", lambda stats, step: captured.append(step.target))
    with policy_within_training_step(algo.policy):
        algo._update_with_batch(dataset.gather(torch.as_tensor(rows)))
    torch.testing.assert_close(captured[0], torch.tensor(expected, dtype=torch.float32))


# --------------------------------------------------------------------------- prioritized


def _prioritized(vector: bool) -> ReplayBuffer:
    source = synthetic_buffer(n=100)
    buf: ReplayBuffer = (
        PrioritizedVectorReplayBuffer(100, 1, alpha=0.6, beta=0.4)
        if vector
        else PrioritizedReplayBuffer(100, alpha=0.6, beta=0.4)
    )
    for i in range(len(source)):
        buf.add(source[i : i + 1], buffer_ids=[0] if vector else None)
    return buf


@pytest.mark.parametrize("vector", [False, True], ids=["buffer", "vector"])
@pytest.mark.parametrize("name", ["td3bc", "il"])
def test_prioritized_buffer_is_rejected(name: str, vector: bool) -> None:
    buf = _prioritized(vector)
    algo = make(name)
    with pytest.raises(TypeError, match="Prioritized.*priorities and importance weights"):
        algo.process_buffer(buf)
    with policy_within_training_step(algo.policy), pytest.raises(TypeError, match="Prioritized"):
        algo.update(buf, 16)
    batch, indices = buf.sample(4)
    with pytest.raises(TypeError, match="Prioritized"):
        algo._preprocess_batch(batch, buf, indices)


def test_prioritized_buffer_is_rejected_by_the_discrete_algorithms() -> None:
    src = discrete_buffer(40)
    buf = PrioritizedReplayBuffer(40, alpha=0.6, beta=0.4)
    buf.update(src)
    algo = make_discrete("dbcq", 0)
    with pytest.raises(TypeError, match="PrioritizedReplayBuffer"):
        algo.process_buffer(buf)

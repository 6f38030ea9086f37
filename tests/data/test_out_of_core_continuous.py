"""Continuous-action data streamed from disk-backed buffers (issue 26, item 4): the same
mini-batches and losses as in RAM for a seed, observations never copied into RAM, image
observations through a convolutional encoder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.utils.torch_utils import policy_within_training_step

from tests.helpers.flat_files import ACT_DIM, OBS_DIM, write_flat
from tianshou_offline import load_buffer
from tianshou_offline.algorithms import make_algorithm
from tianshou_offline.algorithms.continuous.base import OfflineAlgorithmBase
from tianshou_offline.algorithms.continuous.dataset import TransitionDataset
from tianshou_offline.algorithms.continuous.fqe import FQEConfig
from tianshou_offline.algorithms.continuous.nets import ConvEncoder
from tianshou_offline.algorithms.continuous.streaming import StreamingTransitionDataset
from tianshou_offline.algorithms.core import OfflineDataset, SampleStream
from tianshou_offline.data.ondisk import DiskColumn, DiskReplayBuffer
from tianshou_offline.data.writer import BufferWriter

ACTION_SPACE = gym.spaces.Box(-2.0, 2.0, (ACT_DIM,), np.float32)


@pytest.fixture(scope="module")
def flat_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_flat(tmp_path_factory.mktemp("flat") / "flat.hdf5", 600, seed=0)


OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)


def build(name: str, **overrides: Any) -> OfflineAlgorithmBase[Any, Any]:
    algo = make_algorithm(name, OBS_SPACE, ACTION_SPACE, **overrides)
    assert isinstance(algo, OfflineAlgorithmBase)
    return algo


def saved(module: torch.nn.Module) -> dict[str, Any]:
    """``module.state_dict()``."""
    return module.state_dict()


def _assert_same(x: Any, y: Any, what: str) -> None:
    for f in dataclasses.fields(x):
        a, b = getattr(x, f.name), getattr(y, f.name)
        assert torch.equal(a, b), f"{what}: {f.name} differs"


@pytest.mark.parametrize("obs_next", [False, True])
def test_streaming_dataset_draws_the_batches_of_the_ram_dataset(
    tmp_path: Path, obs_next: bool
) -> None:
    path = write_flat(tmp_path / "d.hdf5", 300, seed=1, obs_next=obs_next)
    ram, disk = load_buffer(path), load_buffer(path, memory="disk")
    assert isinstance(disk, DiskReplayBuffer)
    for n_step in (1, 3):
        algo = build("td3bc", normalize_obs=True)
        policy = algo.policy
        a = TransitionDataset.from_buffer(ram, policy=policy, gamma=0.9, n_step=n_step)
        mean, std = policy.obs_normalizer.mean.clone(), policy.obs_normalizer.std.clone()
        b = StreamingTransitionDataset.from_buffer(
            disk, policy=policy, gamma=0.9, n_step=n_step, prefetch=2
        )
        assert torch.equal(policy.obs_normalizer.mean, mean)  # the same chunked fit
        assert torch.equal(policy.obs_normalizer.std, std)
        assert len(a) == len(b) == 300
        _assert_same(a.gather(torch.arange(300)), b.gather(torch.arange(300)), "all rows")
        a.stream.seed = b.stream.seed = 7
        for k in range(5):  # the prefetch thread's batches, in the stream's order
            _assert_same(a.sample(32), b.sample(32), f"batch {k}")
        assert a.stream.count == b.stream.count == 5
        b.close()


class _ReadsWatched:
    """Records how many observation rows each ``take`` of the disk-backed columns reads (a
    streaming dataset reads a batch's rows per step)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.largest = 0
        take = DiskColumn.take

        def watched(column: DiskColumn, rows: Any) -> np.ndarray:
            self.largest = max(self.largest, int(np.size(rows)))
            return take(column, rows)

        monkeypatch.setattr(DiskColumn, "take", watched)


def _train_both(
    path: Path,
    make: Callable[[], OfflineAlgorithmBase[Any, Any]],
    monkeypatch: pytest.MonkeyPatch,
    *,
    steps: int = 6,
    batch: int = 64,
) -> tuple[OfflineDataset[Any], int]:
    """Train ``make()`` for ``steps`` steps from ``path`` in RAM and disk-backed, after the
    same ``torch.manual_seed``; asserts identical per-step statistics and final weights, and
    returns the disk run's dataset (closed) and the most observation rows one read of the
    disk-backed columns gathered during the training steps (after the dataset was built)."""
    runs = []
    memories: tuple[Literal["ram"], Literal["disk"]] = ("ram", "disk")
    reads = _ReadsWatched(monkeypatch)
    dataset: OfflineDataset[Any] | None = None
    for memory in memories:
        buffer = load_buffer(path, memory=memory)
        torch.manual_seed(3)
        algo = make()
        algo.dataset_for(buffer)
        reads.largest = 0
        stats = []
        with policy_within_training_step(algo.policy):
            for _ in range(steps):
                s = algo.update(buffer, batch)
                stats.append({k: v for k, v in dataclasses.asdict(s).items() if k != "train_time"})
        dataset = algo.dataset_for(buffer)
        tensors = {k: v.clone() for k, v in saved(algo).items() if isinstance(v, torch.Tensor)}
        runs.append((stats, tensors))
    (ram_stats, ram_state), (disk_stats, disk_state) = runs
    assert ram_stats == disk_stats
    assert ram_state.keys() == disk_state.keys()
    for key, value in ram_state.items():
        assert torch.equal(value, disk_state[key]), key
    assert isinstance(dataset, StreamingTransitionDataset)
    dataset.close()
    return dataset, reads.largest


@pytest.mark.parametrize(
    ("name", "overrides", "table_bytes"),
    [
        ("td3bc", {"normalize_obs": True}, 10),
        ("iql", {"n_step_return_horizon": 2}, 10),
        ("cql", {}, 10),
        ("cql", {"calibrated": True, "n_step_return_horizon": 2}, 10 + 4),  # Cal-QL: G_t
        ("il", {"actor": "gaussian"}, 10),
        ("rebrac", {"n_step_return_horizon": 2}, 10 + 1),  # next_known
        ("awac", {}, 10),
        ("sacn", {"num_critics": 3}, 10),
        ("edac", {"num_critics": 3}, 10),
        ("lbsac", {"num_critics": 3}, 10),
        ("bcq", {}, 10),
        ("crr", {}, 10),
    ],
)
def test_same_seed_same_batches_and_losses_from_ram_and_disk(
    flat_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    overrides: dict[str, Any],
    table_bytes: int,
) -> None:
    """Every step's statistics (losses) and the final weights are identical whether the data
    is in RAM or streamed from disk by the prefetch thread; the disk-backed run holds a
    streaming dataset (the stated tables, no observation) and its steps read a batch's
    observations from the files."""
    dataset, largest = _train_both(
        flat_file, lambda: build(name, hidden_sizes=(16, 16), **overrides), monkeypatch
    )
    assert dataset.nbytes == table_bytes * len(dataset)
    assert 0 < largest <= 64


def test_fqe_streams_from_disk_with_the_batches_of_ram(
    flat_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FQE of a (normalising) TD3+BC policy: the same statistics and weights from RAM and from
    disk; ``π(s')`` is a table of 4·A bytes per transition, computed from observations read in
    chunks (one here: 600 rows), never copied."""
    torch.manual_seed(5)
    evaluated = build("td3bc", hidden_sizes=(16,), normalize_obs=True)
    evaluated.dataset_for(load_buffer(flat_file))  # fits the evaluated policy's normaliser

    def make() -> OfflineAlgorithmBase[Any, Any]:
        return FQEConfig(hidden_sizes=(16,)).build(evaluated.policy)

    dataset, largest = _train_both(flat_file, make, monkeypatch)
    assert dataset.nbytes == (10 + 4 * ACT_DIM) * len(dataset)
    assert largest <= len(dataset)


def test_sample_stream_is_saved_and_restored_with_the_algorithm(flat_file: Path) -> None:
    buffer = load_buffer(flat_file, memory="disk")
    torch.manual_seed(0)
    algo = build("td3bc", hidden_sizes=(8,))
    with policy_within_training_step(algo.policy):
        algo.update(buffer, 16)
        algo.update(buffer, 16)
    state = saved(algo)
    assert state["_extra_state"]["sample_stream"] == algo.sample_stream.state()
    dataset = algo.dataset_for(buffer)
    assert isinstance(dataset, StreamingTransitionDataset)
    with policy_within_training_step(algo.policy):
        algo.update(buffer, 16)
    expected = dataset.last_positions
    again = build("td3bc", hidden_sizes=(8,))
    again.load_state_dict(state)
    with policy_within_training_step(again.policy):
        again.update(buffer, 16)
    restarted = again.dataset_for(buffer)
    assert isinstance(restarted, StreamingTransitionDataset)
    np.testing.assert_array_equal(restarted.last_positions, expected)
    dataset.close()
    restarted.close()


def test_sample_stream_draws_any_batch_without_the_ones_before() -> None:
    torch.manual_seed(0)
    s = SampleStream()
    batches = [s.next(1000, 8) for _ in range(4)]
    t = SampleStream()
    t.load_state(s.state())
    assert t.count == 4
    assert torch.equal(SampleStream.positions_at(t, 2, 1000, 8), batches[2])
    assert not torch.equal(batches[0], batches[1])


# --------------------------------------------------------------------------- pixels

PIXELS = (1, 16, 16)
PIXEL_SPACE = gym.spaces.Box(0, 255, PIXELS, np.uint8)
BAR_ACTIONS = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def bar_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy ``uint8`` images with a bright column at ``c`` and the action it asks for,
    ``2c/15 − 1``: only a network that reads the pixels can predict it."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, PIXELS[2], n)
    img = rng.integers(0, 40, (n, *PIXELS), dtype=np.uint8)
    img[np.arange(n), 0, :, cols] = 220
    return img, (2.0 * cols / (PIXELS[2] - 1) - 1.0).astype(np.float32)[:, None]


@pytest.fixture(scope="module")
def pixel_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    img, act = bar_images(1200, 0)
    path = tmp_path_factory.mktemp("pixels") / "pixels.hdf5"
    done = np.zeros(len(act), bool)
    done[49::50] = True
    with BufferWriter(path, contiguous=True, store_obs_next=False) as w:
        w.add_transitions(
            obs=img,
            act=act,
            rew=np.zeros(len(act), np.float32),
            terminated=np.zeros(len(act), bool),
            truncated=done,
        )
    return path


def test_pixels_stream_through_a_convolutional_encoder_as_in_ram(pixel_file: Path) -> None:
    runs = []
    for memory in ("ram", "disk"):
        buffer = load_buffer(pixel_file, memory="disk" if memory == "disk" else "ram")
        torch.manual_seed(1)
        algo = make_algorithm("td3bc", PIXEL_SPACE, BAR_ACTIONS, hidden_sizes=(16,))
        assert isinstance(algo, OfflineAlgorithmBase)
        assert isinstance(algo.policy.actor.encoder, ConvEncoder)
        with policy_within_training_step(algo.policy):
            losses = [algo.update(buffer, 32).critic_loss for _ in range(4)]
        runs.append(losses)
    assert runs[0] == runs[1]


def test_behaviour_cloning_learns_from_pixels_streamed_from_disk(pixel_file: Path) -> None:
    """A behaviour-cloning actor with a convolutional encoder, trained from a disk-backed
    buffer of images, predicts the action the image asks for (a network that does not learn
    predicts the mean action: MSE ≈ 0.39)."""
    buffer = load_buffer(pixel_file, memory="disk")
    torch.manual_seed(0)
    algo = make_algorithm("il", PIXEL_SPACE, BAR_ACTIONS, hidden_sizes=(32,), encoder="conv")
    assert isinstance(algo, OfflineAlgorithmBase)
    with policy_within_training_step(algo.policy):
        for _ in range(100):
            algo.update(buffer, 64)
    dataset = algo.dataset_for(buffer)
    assert isinstance(dataset, StreamingTransitionDataset)
    dataset.close()
    img, act = bar_images(300, 9)
    with torch.no_grad():
        pred = algo.policy.select_action(algo.policy.obs_to_tensor(img))
    mse = float(((pred.numpy() - act) ** 2).mean())
    assert mse < 0.08, mse


# --------------------------------------------------------------------------- memory


def _anon_bytes() -> int:
    """The process's anonymous resident memory (``RssAnon``: not the page cache of mapped
    files)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


def _train_from_disk(path: Path, dim: int, steps: int) -> StreamingTransitionDataset:
    """TD3+BC (normalised observations) for ``steps`` steps from ``path`` loaded disk-backed;
    returns its (closed) dataset."""
    space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
    algo = make_algorithm("td3bc", space, ACTION_SPACE, hidden_sizes=(16,))
    assert isinstance(algo, OfflineAlgorithmBase)
    buffer = load_buffer(path, memory="disk")
    with policy_within_training_step(algo.policy):
        for _ in range(steps):
            algo.update(buffer, 256)
    dataset = algo.dataset_for(buffer)
    assert isinstance(dataset, StreamingTransitionDataset)
    dataset.close()
    return dataset


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_disk_backed_training_holds_tens_of_bytes_per_transition(tmp_path: Path) -> None:
    """Loading 400k transitions of 64 float32 observations (100 MiB) disk-backed and training
    TD3+BC from them keeps the observations out of RAM: the numpy tables the loader and the
    dataset keep are measured (tracemalloc) against the budget their docstrings state, and
    the anonymous memory (torch's allocations included) grows by a fraction of one copy of
    the observations (256 B per transition; the in-RAM dataset holds two)."""
    import tracemalloc

    n, dim, part = 400_000, 64, 100_000
    path = tmp_path / "big.hdf5"
    rng = np.random.default_rng(0)
    truncated = np.zeros(part, bool)
    truncated[999::1000] = True
    with BufferWriter(path, contiguous=True, store_obs_next=False) as w:
        for _ in range(n // part):
            w.add_transitions(
                obs=rng.normal(size=(part, dim)).astype(np.float32),
                act=rng.uniform(-2.0, 2.0, (part, ACT_DIM)).astype(np.float32),
                rew=rng.normal(size=part).astype(np.float32),
                terminated=np.zeros(part, bool),
                truncated=truncated,
            )
    _train_from_disk(write_flat(tmp_path / "warm.hdf5", 300, seed=2), OBS_DIM, 2)  # warm-up
    anon = _anon_bytes()
    tracemalloc.start()
    try:
        load_buffer(path, memory="disk")
        loaded = tracemalloc.get_traced_memory()[0]  # the buffer is freed here
        dataset = _train_from_disk(path, dim, 3)
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    grown = _anon_bytes() - anon
    # the buffer: act (2 × float32), rew (float32), 3 flags = 15 B (data/ondisk.py); the
    # dataset: rew, discount (float32), terminated, last (1 B each) = 10 B
    # (continuous/streaming.py)
    assert loaded / n < 15 + 1, loaded / n
    assert dataset.nbytes == 10 * n
    assert kept / n < 15 + 10 + 1, kept / n
    assert grown < 40 * n + (24 << 20), grown / n

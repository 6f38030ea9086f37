"""``convert tfds``: tiny RLDS datasets built here with tensorflow-datasets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("ale_py")

from tests.helpers.rlu import Episode, atari_episodes  # noqa: E402
from tianshou_offline import load_buffer  # noqa: E402
from tianshou_offline.cli import build_parser  # noqa: E402
from tianshou_offline.converters import tfds as tfds_conv  # noqa: E402
from tianshou_offline.converters.rl_unplugged import load_rl_unplugged  # noqa: E402
from tianshou_offline.errors import SourceNotFoundError  # noqa: E402

ATARI_EPISODES: list[Episode] = []
VECTOR_EPISODES: list[dict[str, Any]] = []

if TYPE_CHECKING:  # tensorflow-datasets ships no types; the builders only use their own methods
    GeneratorBasedBuilder = object
else:
    GeneratorBasedBuilder = tfds.core.GeneratorBasedBuilder


def _steps(obs: Any, act: np.ndarray, rew: np.ndarray, terminal: bool) -> dict[str, Any]:
    T = len(rew)
    return {
        "observation": obs,
        "action": act,
        "reward": rew,
        "discount": np.ones(T, np.float32),
        "is_first": np.arange(T) == 0,
        "is_last": np.arange(T) == T - 1,
        "is_terminal": (np.arange(T) == T - 1) & terminal,
    }


class TinyRldsAtari(GeneratorBasedBuilder):
    """RLDS episodes of real Atari frames, as rlu_atari stores them."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> Any:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "steps": tfds.features.Dataset(
                        {
                            "observation": tfds.features.Image(
                                shape=(84, 84, 1), encoding_format="png"
                            ),
                            "action": np.int64,
                            "reward": np.float32,
                            "discount": np.float32,
                            "is_first": np.bool_,
                            "is_last": np.bool_,
                            "is_terminal": np.bool_,
                        }
                    ),
                    "episode_id": np.int64,
                }
            ),
        )

    def _split_generators(self, dl_manager: Any) -> Any:
        return {"train": self._generate_examples()}

    def _generate_examples(self) -> Any:
        for i, ep in enumerate(ATARI_EPISODES):
            # RLDS: T + 1 steps; the last holds only the final observation
            act = np.concatenate([ep.actions, [0]])
            rew = np.concatenate([ep.rewards, [0.0]]).astype(np.float32)
            steps = _steps(ep.frames[:, :, :, None], act, rew, ep.terminal)
            yield i, {"steps": steps, "episode_id": i}


class TinyRldsVector(GeneratorBasedBuilder):
    """d4rl_mujoco-like RLDS episodes with vector observations and actions."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> Any:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "steps": tfds.features.Dataset(
                        {
                            "observation": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                            "action": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                            "reward": np.float32,
                            "discount": np.float32,
                            "is_first": np.bool_,
                            "is_last": np.bool_,
                            "is_terminal": np.bool_,
                        }
                    ),
                }
            ),
        )

    def _split_generators(self, dl_manager: Any) -> Any:
        return {"train": self._generate_examples()}

    def _generate_examples(self) -> Any:
        for i, ep in enumerate(VECTOR_EPISODES):
            yield i, {"steps": _steps(ep["obs"], ep["act"], ep["rew"], bool(ep["terminal"]))}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tfds")
    ATARI_EPISODES[:] = atari_episodes(2, max_steps=25, seed=5) + atari_episodes(
        1, max_steps=400, seed=6
    )
    rng = np.random.default_rng(0)
    VECTOR_EPISODES[:] = [
        {
            "obs": rng.normal(size=(T, 3)).astype(np.float32),
            "act": rng.normal(size=(T, 2)).astype(np.float32),
            "rew": rng.normal(size=T).astype(np.float32),
            "terminal": np.bool_(term),
        }
        for T, term in ((5, True), (8, False), (1, False), (6, True))
    ]
    for builder in (TinyRldsAtari, TinyRldsVector):
        tfds_builder: Any = builder  # a tfds.core.GeneratorBasedBuilder at run time
        tfds_builder(data_dir=str(d)).download_and_prepare()
    return d


def _stack(frames: np.ndarray, t: int) -> np.ndarray:
    return np.stack([frames[max(0, k)] for k in range(t - 3, t + 1)])


def test_rlds_atari_compact_frame_stack(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "atari.hdf5"
    res = tfds_conv.convert_tfds("tiny_rlds_atari", out, data_dir=data_dir, frame_stack=4)
    # order of episodes in a tfds split is the builder's (shuffled by key); compare by episode
    buf = load_rl_unplugged(out)
    assert res.num_transitions == sum(len(e.actions) for e in ATARI_EPISODES) == len(buf)
    ends = np.flatnonzero(buf.done)
    starts = np.concatenate([[0], ends[:-1] + 1])
    seen = set()
    for s, e in zip(starts, ends, strict=True):
        ep_idx = next(
            i
            for i, ep in enumerate(ATARI_EPISODES)
            if len(ep.actions) == e - s + 1
            and np.array_equal(ep.frames[: e - s + 1], buf.obs[s : e + 1])
        )
        seen.add(ep_idx)
        ep = ATARI_EPISODES[ep_idx]
        for t in range(len(ep.actions)):
            b = buf[int(s + t)]
            np.testing.assert_array_equal(b.obs, _stack(ep.frames, t))
            np.testing.assert_array_equal(b.obs_next, _stack(ep.frames, t + 1))
            assert b.act == ep.actions[t] and b.rew == ep.rewards[t]
        assert bool(buf.terminated[e]) == ep.terminal
        assert bool(buf.truncated[e]) == (not ep.terminal)
    assert seen == set(range(len(ATARI_EPISODES)))


def test_rlds_vector_with_obs_next(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "vec.hdf5"
    res = tfds_conv.convert_tfds("tiny_rlds_vector", out, data_dir=data_dir)
    assert res.details["skipped_episodes"] == 1  # the one-step episode has no transition
    buf = load_buffer(out)
    assert len(buf) == 4 + 7 + 5
    ends = np.flatnonzero(buf.done)
    starts = np.concatenate([[0], ends[:-1] + 1])
    for s, e in zip(starts, ends, strict=True):
        ep = next(x for x in VECTOR_EPISODES if np.array_equal(x["obs"][0], buf.obs[s]))
        T = len(ep["rew"])
        np.testing.assert_array_equal(buf.obs[s : e + 1], ep["obs"][: T - 1])
        np.testing.assert_array_equal(buf.obs_next[s : e + 1], ep["obs"][1:])
        np.testing.assert_array_equal(buf.act[s : e + 1], ep["act"][: T - 1])
        np.testing.assert_array_equal(buf.rew[s : e + 1], ep["rew"][: T - 1])
        assert bool(buf.terminated[e]) == bool(ep["terminal"])


def test_cli_and_errors(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.hdf5"
    args = build_parser().parse_args(
        ["convert", "tfds", "tiny_rlds_vector", "--data-dir", str(data_dir), "-o", str(out), "--no-progress"]
    )
    assert args.func(args) == 0 and out.exists()
    assert "transitions" in capsys.readouterr().out
    with pytest.raises(SourceNotFoundError, match="not prepared"):
        tfds_conv.convert_tfds("tiny_rlds_vector", tmp_path / "x.hdf5", data_dir=tmp_path)
    assert not (tmp_path / "x.hdf5").exists()

"""D4RL-layout files → buffers: default semantics, qlearning_dataset compatibility, names,
reference scores, bad inputs, interrupted conversions and the CLI.

The D4RL files are written here with h5py; the expected transitions come from reference
implementations of the rules written row by row in this file (independent of the converter's
vectorised, chunked code).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import pytest

from tianshou_offline import load_buffer, read_metadata
from tianshou_offline.converters.d4rl import convert_d4rl, d4rl_transitions, resolve_d4rl_source
from tianshou_offline.converters.d4rl_scores import (
    D4RL_DATASETS,
    normalized_score,
    reference_scores,
)
from tianshou_offline.data.format import EPISODES_GROUP
from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    OutputExistsError,
    SourceNotFoundError,
)

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------------------
# D4RL-layout files
# --------------------------------------------------------------------------------------


def write_d4rl(
    path: Path,
    *,
    n: int = 120,
    next_obs: bool = True,
    timeouts: bool = True,
    gzip: bool = False,
    dtype: Any = np.float32,
    terminal_rows: tuple[int, ...] = (9, 40, 41, 77),
    timeout_rows: tuple[int, ...] = (19, 20, 55, 77, 99),
    last: str = "open",
    infos: bool = False,
    metadata: bool = False,
    column_rewards: bool = False,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A D4RL-layout file. ``last``: 'open' (final row neither flag), 'terminal', 'timeout'.

    Rows 19, 20 are consecutive timeouts; 40, 41 consecutive terminals; 77 both flags.
    """
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, 5)).astype(dtype)
    terminals = np.zeros(n, dtype=bool)
    terminals[list(terminal_rows)] = True
    to = np.zeros(n, dtype=bool)
    to[list(timeout_rows)] = True
    if last == "terminal":
        terminals[-1] = True
    elif last == "timeout":
        to[-1] = True
    data: dict[str, np.ndarray] = {
        "observations": obs[:-1],
        "actions": rng.uniform(-1, 1, size=(n, 3)).astype(dtype),
        "rewards": rng.normal(size=(n, 1) if column_rewards else n).astype(dtype),
        "terminals": terminals,
    }
    if timeouts:
        data["timeouts"] = to
    if next_obs:
        # a real env's next observation; differs from the next row after a reset
        data["next_observations"] = rng.normal(size=(n, 5)).astype(dtype)
        inside = ~(terminals | to)
        data["next_observations"][inside[:]] = obs[1:][inside]
    kw: dict[str, Any] = {"compression": "gzip"} if gzip else {}
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v, **kw)
        if infos:
            data["infos/qpos"] = rng.normal(size=(n, 4))
            data["infos/goal/xy"] = rng.normal(size=(n, 2)).astype(np.float32)
            f.create_dataset("infos/qpos", data=data["infos/qpos"], **kw)
            f.create_dataset("infos/goal/xy", data=data["infos/goal/xy"], **kw)
        if metadata:
            f.create_dataset("metadata/algorithm", data="SAC")
            f.create_dataset("metadata/iteration", data=np.int64(7))
            f.create_dataset("metadata/policy/fc0/weight", data=np.zeros((64, 32)))
    return data


def ref_qlearning(
    data: dict[str, np.ndarray], max_episode_steps: int | None = None
) -> dict[str, np.ndarray]:
    """The rules of ``d4rl.qlearning_dataset(env, terminate_on_end=False)``, row by row."""
    rewards = data["rewards"].reshape(-1)
    n = rewards.shape[0]
    cols: dict[str, list[Any]] = {k: [] for k in ("obs", "act", "obs_next", "rew", "terminated")}
    step = 0
    for i in range(n - 1):
        if "timeouts" in data:
            last_step = bool(data["timeouts"][i])
        else:
            assert max_episode_steps is not None
            last_step = step == max_episode_steps - 1
        if last_step:  # time-limit row: skipped, counter restarts
            step = 0
            continue
        if data["terminals"][i]:
            step = 0
        cols["obs"].append(data["observations"][i].astype(np.float32))
        cols["obs_next"].append(data["observations"][i + 1].astype(np.float32))
        cols["act"].append(data["actions"][i].astype(np.float32))
        cols["rew"].append(np.float32(rewards[i]))
        cols["terminated"].append(bool(data["terminals"][i]))
        step += 1
    return {k: np.array(v) for k, v in cols.items()}


def ref_default(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The default semantics (docs/CONVERTERS.md), row by row."""
    obs = data["observations"]
    n = obs.shape[0]
    term = data["terminals"]
    to = data.get("timeouts", np.zeros(n, dtype=bool))
    rows: list[dict[str, Any]] = []
    for i in range(n):
        timed_out = bool(to[i]) and not term[i]
        if "next_observations" in data:
            rows.append(
                {
                    "i": i,
                    "next": data["next_observations"][i],
                    "term": bool(term[i]),
                    "trunc": timed_out,
                    "end": bool(term[i]) or timed_out or i == n - 1,
                }
            )
            continue
        if timed_out:  # no successor in the file: drop; the row before ends truncated
            if rows and not rows[-1]["end"]:
                rows[-1]["trunc"] = rows[-1]["end"] = True
            continue
        if term[i]:
            rows.append({"i": i, "next": obs[i], "term": True, "trunc": False, "end": True})
        elif i == n - 1:  # the file stops mid-episode: drop; the row before ends (cut)
            if rows and not rows[-1]["end"]:
                rows[-1]["end"] = True
        else:
            rows.append({"i": i, "next": obs[i + 1], "term": False, "trunc": False, "end": False})
    rows[-1]["end"] = True
    idx = np.array([r["i"] for r in rows])
    return {
        "obs": obs[idx],
        "obs_next": np.array([r["next"] for r in rows]),
        "act": data["actions"][idx],
        "rew": data["rewards"].reshape(-1)[idx],
        "terminated": np.array([r["term"] for r in rows]),
        "truncated": np.array([r["trunc"] for r in rows]),
        "done": np.array([r["end"] for r in rows]),
    }


def episode_table(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        g = f[EPISODES_GROUP]
        out = {k: g[k][()] for k in ("start", "length")}
        if "metadata" in g:
            out.update({f"metadata/{k}": g["metadata"][k][()] for k in g["metadata"]})
        return out


VARIANTS = [
    pytest.param(dict(next_obs=True, timeouts=True), id="next_obs+timeouts"),
    pytest.param(dict(next_obs=False, timeouts=True), id="no_next_obs+timeouts"),
    pytest.param(
        dict(next_obs=True, timeouts=True, gzip=True, dtype=np.float64), id="gzip+float64"
    ),
    pytest.param(
        dict(next_obs=False, timeouts=True, gzip=True, last="terminal"), id="gzip+last_terminal"
    ),
    pytest.param(
        dict(next_obs=False, timeouts=True, last="timeout", column_rewards=True),
        id="last_timeout+(N,1)rewards",
    ),
    pytest.param(dict(next_obs=True, timeouts=True, last="timeout"), id="next_obs+last_timeout"),
]


# --------------------------------------------------------------------------------------
# semantics
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_qlearning_compat_matches_reference(tmp_path: Path, variant: dict[str, Any]) -> None:
    data = write_d4rl(tmp_path / "d.hdf5", **variant)
    out = convert_d4rl(
        tmp_path / "d.hdf5", tmp_path / "o.hdf5", qlearning_compat=True, progress=False
    )
    ref = ref_qlearning(data)
    buf = load_buffer(out)
    assert len(buf) == len(ref["rew"])
    for ours, theirs in (("obs", "obs"), ("obs_next", "obs_next"), ("act", "act"), ("rew", "rew")):
        got = np.asarray(getattr(buf, ours))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, ref[theirs])
    np.testing.assert_array_equal(buf.terminated, ref["terminated"])
    # the only addition: the row before each dropped time-limit row is marked truncated
    assert not np.any(buf.truncated & buf.terminated)
    md = read_metadata(out)
    assert md.provenance is not None and md.provenance.extra["semantics"] == "qlearning_compat"


@pytest.mark.parametrize("max_steps", [7, 13])
def test_qlearning_compat_without_timeouts_uses_max_episode_steps(
    tmp_path: Path, max_steps: int
) -> None:
    data = write_d4rl(tmp_path / "d.hdf5", next_obs=False, timeouts=False)
    with pytest.raises(DataValidationError, match="max-episode-steps"):
        convert_d4rl(
            tmp_path / "d.hdf5", tmp_path / "o.hdf5", qlearning_compat=True, progress=False
        )
    convert_d4rl(
        tmp_path / "d.hdf5",
        tmp_path / "o.hdf5",
        qlearning_compat=True,
        max_episode_steps=max_steps,
        progress=False,
    )
    ref = ref_qlearning(data, max_episode_steps=max_steps)
    buf = load_buffer(tmp_path / "o.hdf5")
    np.testing.assert_array_equal(buf.obs, ref["obs"])
    np.testing.assert_array_equal(buf.obs_next, ref["obs_next"])
    np.testing.assert_array_equal(buf.rew, ref["rew"])
    np.testing.assert_array_equal(buf.terminated, ref["terminated"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_default_semantics_match_reference(tmp_path: Path, variant: dict[str, Any]) -> None:
    data = write_d4rl(tmp_path / "d.hdf5", **variant)
    out = convert_d4rl(tmp_path / "d.hdf5", tmp_path / "o.hdf5", progress=False)
    ref = ref_default(data)
    buf = load_buffer(out)
    for key in ("obs", "obs_next", "act", "rew", "terminated", "truncated", "done"):
        np.testing.assert_array_equal(np.asarray(getattr(buf, key)), ref[key], err_msg=key)
        if key in ("obs", "act", "rew"):
            assert np.asarray(getattr(buf, key)).dtype == np.dtype(variant.get("dtype", np.float32))
    # the episode table agrees with done, and Tianshou's next() follows it
    table = episode_table(out)
    ends = np.flatnonzero(ref["done"])
    np.testing.assert_array_equal(table["start"] + table["length"] - 1, ends)
    np.testing.assert_array_equal(buf.next(ends), ends)
    # d4rl_transitions (what load_buffer uses on a raw D4RL file) gives the same columns
    with h5py.File(tmp_path / "d.hdf5", "r") as f:
        cols = d4rl_transitions(f)
    for key in ("obs", "obs_next", "act", "rew", "terminated", "truncated", "done"):
        np.testing.assert_array_equal(cols[key], ref[key])
    raw = load_buffer(tmp_path / "d.hdf5")
    np.testing.assert_array_equal(raw.obs_next, ref["obs_next"])


def test_timed_out_episode_loses_its_last_transition(tmp_path: Path) -> None:
    """Documented: without next_observations the last row of a timed-out episode is dropped."""
    data = write_d4rl(
        tmp_path / "d.hdf5",
        next_obs=False,
        terminal_rows=(),
        timeout_rows=(9, 19),
        n=30,
        last="timeout",
    )
    buf = load_buffer(convert_d4rl(tmp_path / "d.hdf5", tmp_path / "o.hdf5", progress=False))
    assert len(buf) == 27
    np.testing.assert_array_equal(np.flatnonzero(buf.truncated), [8, 17, 26])
    np.testing.assert_array_equal(buf.obs_next[8], data["observations"][9])
    md = read_metadata(tmp_path / "o.hdf5")
    assert md.provenance is not None and md.provenance.extra["rows_dropped"] == 3
    assert md.num_episodes == 3


@pytest.mark.parametrize("next_obs", [True, False])
def test_chunking_does_not_change_the_result(tmp_path: Path, next_obs: bool) -> None:
    write_d4rl(tmp_path / "d.hdf5", next_obs=next_obs, n=200)
    whole = load_buffer(convert_d4rl(tmp_path / "d.hdf5", tmp_path / "a.hdf5", progress=False))
    for rows in (1, 7, 20, 41):
        small = load_buffer(
            convert_d4rl(
                tmp_path / "d.hdf5",
                tmp_path / "b.hdf5",
                chunk_rows=rows,
                overwrite=True,
                progress=False,
            )
        )
        for key in ("obs", "obs_next", "act", "rew", "terminated", "truncated", "done"):
            np.testing.assert_array_equal(
                getattr(small, key), getattr(whole, key), err_msg=f"{rows} {key}"
            )


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"next_obs": False},
        {"dtype": np.float64},
        {"column_rewards": True, "last": "terminal"},
    ],
    ids=repr,
)
def test_memory_mapped_source_gives_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: dict[str, Any]
) -> None:
    """Uncompressed contiguous columns are read as memory maps (no copy); the output equals
    the one from reading them with h5py, for every chunk size."""
    from tianshou_offline.data import d4rl_layout
    from tianshou_offline.data import mapped as mapped_io

    write_d4rl(tmp_path / "d.hdf5", n=300, **variant)
    mapped: list[int] = []
    original = mapped_io.map_rows

    def spy(*args: Any) -> np.ndarray:
        out = original(*args)
        mapped.append(out.shape[0])
        assert not out.flags.writeable
        return out

    monkeypatch.setattr(mapped_io, "map_rows", spy)
    for rows in (7, 64, 1 << 18):
        convert_d4rl(tmp_path / "d.hdf5", tmp_path / f"m{rows}.hdf5", chunk_rows=rows, progress=False)
    assert mapped
    monkeypatch.setattr(d4rl_layout, "mappable_fd", lambda f: None)
    convert_d4rl(tmp_path / "d.hdf5", tmp_path / "r.hdf5", progress=False)
    read = load_buffer(tmp_path / "r.hdf5")
    for rows in (7, 64, 1 << 18):
        got = load_buffer(tmp_path / f"m{rows}.hdf5")
        for key in ("obs", "obs_next", "act", "rew", "terminated", "truncated", "done"):
            np.testing.assert_array_equal(getattr(got, key), getattr(read, key), err_msg=key)
    # arrays returned to callers are never maps of the file
    with h5py.File(tmp_path / "d.hdf5") as f:
        cols = d4rl_transitions(f)
    assert all(np.asarray(v).flags.writeable for v in cols.values())


def test_compressed_or_chunked_sources_are_not_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tianshou_offline.data import mapped

    def fail(*args: Any) -> np.ndarray:
        raise AssertionError("mapped")

    monkeypatch.setattr(mapped, "map_rows", fail)
    write_d4rl(tmp_path / "g.hdf5", gzip=True)
    convert_d4rl(tmp_path / "g.hdf5", tmp_path / "g_out.hdf5", progress=False)
    data = write_d4rl(tmp_path / "d.hdf5")
    with h5py.File(tmp_path / "c.hdf5", "w") as f:  # chunked, unfiltered
        for k, v in data.items():
            f.create_dataset(k, data=v, chunks=True)
    convert_d4rl(tmp_path / "c.hdf5", tmp_path / "c_out.hdf5", progress=False)
    for out in ("g_out.hdf5", "c_out.hdf5"):
        assert len(load_buffer(tmp_path / out)) == 120


def test_without_timeouts_episodes_end_at_terminals_or_max_steps(tmp_path: Path) -> None:
    data = write_d4rl(
        tmp_path / "d.hdf5",
        next_obs=True,
        timeouts=False,
        terminal_rows=(4,),
        timeout_rows=(),
        n=25,
    )
    buf = load_buffer(convert_d4rl(tmp_path / "d.hdf5", tmp_path / "o.hdf5", progress=False))
    np.testing.assert_array_equal(np.flatnonzero(buf.done), [4, 24])
    convert_d4rl(
        tmp_path / "d.hdf5",
        tmp_path / "o.hdf5",
        max_episode_steps=6,
        overwrite=True,
        progress=False,
    )
    buf = load_buffer(tmp_path / "o.hdf5")
    # after the terminal at 4: a new episode every 6 steps (rows 10, 16, 22), cut at 24
    np.testing.assert_array_equal(np.flatnonzero(buf.truncated), [10, 16, 22])
    np.testing.assert_array_equal(np.flatnonzero(buf.done), [4, 10, 16, 22, 24])
    np.testing.assert_array_equal(buf.obs, data["observations"])


def test_float64_kept_by_default_and_cast_on_request(tmp_path: Path) -> None:
    data = write_d4rl(tmp_path / "d.hdf5", dtype=np.float64, gzip=True)
    buf = load_buffer(convert_d4rl(tmp_path / "d.hdf5", tmp_path / "a.hdf5", progress=False))
    assert (
        buf.obs.dtype == np.float64 and buf.act.dtype == np.float64 and buf.rew.dtype == np.float64
    )
    np.testing.assert_array_equal(buf.obs, data["observations"])
    buf32 = load_buffer(
        convert_d4rl(tmp_path / "d.hdf5", tmp_path / "b.hdf5", float32=True, progress=False)
    )
    assert buf32.obs.dtype == np.float32 and buf32.obs_next.dtype == np.float32
    assert buf32.act.dtype == np.float32 and buf32.rew.dtype == np.float32
    np.testing.assert_array_equal(buf32.obs, data["observations"].astype(np.float32))
    md = read_metadata(tmp_path / "b.hdf5")
    assert md.observation_space is not None and md.observation_space.dtype == np.float32


def test_infos_metadata_spaces_and_compression(tmp_path: Path) -> None:
    data = write_d4rl(tmp_path / "d.hdf5", next_obs=False, infos=True, metadata=True)
    out = convert_d4rl(
        tmp_path / "d.hdf5",
        tmp_path / "o.hdf5",
        with_infos=True,
        compression="gzip",
        env_id="Hopper-v5",
        progress=False,
    )
    ref = ref_default(data)
    buf = load_buffer(out)
    keep = np.array(
        [np.flatnonzero((data["observations"] == o).all(axis=1))[0] for o in ref["obs"]]
    )
    np.testing.assert_array_equal(buf.info.qpos, data["infos/qpos"][keep])
    np.testing.assert_array_equal(buf.info.goal.xy, data["infos/goal/xy"][keep])
    md = read_metadata(out)
    assert md.env_id == "Hopper-v5"
    assert md.observation_space is not None and md.observation_space.shape == (5,)
    assert isinstance(md.action_space, gym.spaces.Box) and float(md.action_space.low.min()) == -1.0
    assert md.provenance is not None and md.provenance.source == "d4rl"
    extra = md.provenance.extra
    assert extra["metadata"]["algorithm"] == "SAC" and extra["metadata"]["iteration"] == 7
    assert extra["metadata_skipped"] == {"policy/fc0/weight": [64, 32]}
    with h5py.File(out, "r") as f:
        assert f["_meta/obs"].compression == "gzip"


def test_load_buffer_reads_raw_d4rl_files_with_default_semantics(tmp_path: Path) -> None:
    data = write_d4rl(tmp_path / "d.hdf5", next_obs=False)
    buf = load_buffer(tmp_path / "d.hdf5")
    ref = ref_default(data)
    np.testing.assert_array_equal(buf.obs, ref["obs"])
    np.testing.assert_array_equal(buf.done, ref["done"])


# --------------------------------------------------------------------------------------
# names, cache location, reference scores
# --------------------------------------------------------------------------------------


def test_name_resolves_to_d4rl_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    with pytest.raises(SourceNotFoundError) as e:
        convert_d4rl("hopper-medium-v2", tmp_path / "o.hdf5", progress=False)
    msg = str(e.value)
    assert str(tmp_path / "cache" / "hopper_medium-v2.hdf5") in msg
    assert "gym_mujoco_v2/hopper_medium-v2.hdf5" in msg and "curl" in msg
    write_d4rl(tmp_path / "cache" / "hopper_medium-v2.hdf5")
    path, info = resolve_d4rl_source("hopper-medium-v2")
    assert path == tmp_path / "cache" / "hopper_medium-v2.hdf5" and info is not None
    out = convert_d4rl("hopper-medium-v2", tmp_path / "o.hdf5", progress=False)
    md = read_metadata(out)
    assert md.provenance is not None and md.provenance.dataset_id == "hopper-medium-v2"
    assert float(md.extra_attrs["ref_min_score"]) == -20.272305
    assert float(md.extra_attrs["ref_max_score"]) == 3234.3
    assert md.extra_attrs["max_episode_steps"] == "1000"


def test_default_cache_dir_and_unknown_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("D4RL_DATASET_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SourceNotFoundError, match=r"\.d4rl/datasets/hopper_medium_replay-v2\.hdf5"):
        resolve_d4rl_source("hopper-medium-replay-v2")
    with pytest.raises(SourceNotFoundError, match="did you mean hopper-medium-v2"):
        resolve_d4rl_source("hoper-medium-v2")
    with pytest.raises(SourceNotFoundError, match="no such file"):
        resolve_d4rl_source(str(tmp_path / "missing.hdf5"))


def test_reference_scores() -> None:
    # D4RL's 0–100 scale
    assert normalized_score("hopper-medium-v2", 3234.3) == pytest.approx(100.0)
    assert normalized_score("hopper-medium-v2", -20.272305) == pytest.approx(0.0, abs=1e-9)
    assert normalized_score("halfcheetah-medium-expert-v2", 5927.41) == pytest.approx(50.0)
    assert reference_scores("walker2d-medium-replay-v2") == (1.629008, 4592.3)
    assert reference_scores("ant-medium-v2") == (-325.6, 3879.7)
    assert reference_scores("antmaze-large-diverse-v2") == (0.0, 1.0)
    assert reference_scores("door-human-v1") == (-56.512833, 2880.5693087298737)
    assert reference_scores("pen-cloned-v0") == (96.262799, 3076.8331017826877)
    assert reference_scores("kitchen-mixed-v0") == (0.0, 4.0)
    assert reference_scores("maze2d-large-v1") == (6.7, 273.99)
    maze_expert = 193.66285642381482
    assert normalized_score("d4rl/maze2d-umaze-dense-v1", maze_expert) == pytest.approx(100.0)
    with pytest.raises(SourceNotFoundError, match="unknown D4RL dataset"):
        normalized_score("cartpole-v1", 1.0)
    families = {name.split("-")[0] for name in D4RL_DATASETS}
    assert {
        "hopper",
        "halfcheetah",
        "walker2d",
        "ant",
        "antmaze",
        "pen",
        "hammer",
        "door",
        "relocate",
        "kitchen",
        "maze2d",
    } <= families
    assert D4RL_DATASETS["walker2d-medium-replay-v0"].filename == "walker_mixed.hdf5"
    assert D4RL_DATASETS["antmaze-umaze-v0"].max_episode_steps == 700


# --------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------


def test_missing_keys(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "d.hdf5", "w") as f:
        f["observations"] = np.zeros((5, 2))
        f["actions"] = np.zeros((5, 1))
    with pytest.raises(DatasetFormatError, match=r"missing 'rewards', 'terminals'"):
        convert_d4rl(tmp_path / "d.hdf5", tmp_path / "o.hdf5", progress=False)
    assert not (tmp_path / "o.hdf5").exists()


@pytest.mark.parametrize(
    "key", ["actions", "rewards", "terminals", "timeouts", "next_observations"]
)
def test_length_mismatch(tmp_path: Path, key: str) -> None:
    data = write_d4rl(tmp_path / "d.hdf5", n=30, terminal_rows=(3,), timeout_rows=(9,))
    with h5py.File(tmp_path / "d.hdf5", "a") as f:
        del f[key]
        f[key] = data[key][:-2]
    with pytest.raises(DatasetFormatError, match=f"'{key}' has"):
        convert_d4rl(tmp_path / "d.hdf5", tmp_path / "o.hdf5", progress=False)
    assert not (tmp_path / "o.hdf5").exists()


def test_nan_rewards_refused_or_kept_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_d4rl(tmp_path / "d.hdf5", n=30, terminal_rows=(3,), timeout_rows=(9,))
    with h5py.File(tmp_path / "d.hdf5", "a") as f:
        f["rewards"][5] = np.nan
    with pytest.raises(DataValidationError, match=r"1 NaN/inf values .*first at source row 5"):
        convert_d4rl(tmp_path / "d.hdf5", tmp_path / "o.hdf5", progress=False)
    assert not (tmp_path / "o.hdf5").exists()
    with caplog.at_level(logging.WARNING):
        convert_d4rl(tmp_path / "d.hdf5", tmp_path / "o.hdf5", nan_policy="warn", progress=False)
    assert "NaN/inf" in caplog.text
    buf = load_buffer(tmp_path / "o.hdf5")
    assert np.isnan(buf.rew[5]) and np.isfinite(np.delete(buf.rew, 5)).all()
    assert buf.rew[4] == data["rewards"][4]


def test_output_exists_without_overwrite(tmp_path: Path) -> None:
    write_d4rl(tmp_path / "d.hdf5")
    (tmp_path / "o.hdf5").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert_d4rl(tmp_path / "d.hdf5", tmp_path / "o.hdf5", progress=False)
    assert (tmp_path / "o.hdf5").read_bytes() == b"keep me"
    convert_d4rl(tmp_path / "d.hdf5", tmp_path / "o.hdf5", overwrite=True, progress=False)
    assert read_metadata(tmp_path / "o.hdf5").num_transitions > 0


def test_exception_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_d4rl(tmp_path / "d.hdf5", n=200)
    from tianshou_offline.data import writer as writer_mod

    calls = {"n": 0}
    original = writer_mod.BufferWriter.add_transitions

    def failing(self: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        original(self, **kw)

    monkeypatch.setattr(writer_mod.BufferWriter, "add_transitions", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        # small chunks: chunks 1 and 2 reach the (temporary) file before the failure
        convert_d4rl(tmp_path / "d.hdf5", tmp_path / "o.hdf5", chunk_rows=10, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.hdf5"]


_SLOW_CONVERT = """
import signal, sys, time, pathlib
# a background shell starts children with SIGINT ignored; Ctrl-C is what is tested here
signal.signal(signal.SIGINT, signal.default_int_handler)
from tianshou_offline.cli.convert import main_d4rl
from tianshou_offline.converters import d4rl
original = d4rl.iter_d4rl_chunks
def slow(plan, rows):
    for i, item in enumerate(original(plan, 1000)):
        yield item
        if i == 2:
            pathlib.Path(sys.argv[3]).write_text("midway")
            time.sleep(60)
d4rl.iter_d4rl_chunks = slow
sys.exit(main_d4rl([sys.argv[1], "-o", sys.argv[2], "--no-progress"]))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_conversion_leaves_no_output(tmp_path: Path, sig: signal.Signals) -> None:
    write_d4rl(tmp_path / "d.hdf5", n=20_000, timeout_rows=(), terminal_rows=())
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SLOW_CONVERT,
            str(tmp_path / "d.hdf5"),
            str(tmp_path / "o.hdf5"),
            str(marker),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert not (tmp_path / "o.hdf5").exists()
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err
        # a clean abort also removes the temporary file
        assert sorted(p.name for p in tmp_path.iterdir()) == ["d.hdf5", "marker"]
    else:
        assert proc.returncode == -signal.SIGKILL


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def _one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not _is_noise(ln)]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in res.stderr
    return lines[0]


def _is_noise(line: str) -> bool:
    """Lines that third-party imports (TensorFlow via tensorboard) may print to stderr."""
    return line.startswith(
        ("I0000", "WARNING: All log messages", "To enable the following", "W0000", "E0000")
    )


def test_cli_convert_d4rl(tmp_path: Path) -> None:
    write_d4rl(tmp_path / "d.hdf5")
    cmd = ["-m", "tianshou_offline.cli", "convert", "d4rl"]
    res = _run(
        [
            *cmd,
            str(tmp_path / "d.hdf5"),
            "-o",
            str(tmp_path / "o.hdf5"),
            "--qlearning-compat",
            "--no-progress",
        ]
    )
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout and "transitions" in res.stdout
    line = _one_line_error(_run([*cmd, str(tmp_path / "d.hdf5"), "-o", str(tmp_path / "o.hdf5")]))
    assert "output exists" in line
    line = _one_line_error(
        _run(
            [*cmd, "hopper-medium-v2", "-o", str(tmp_path / "x.hdf5")],
            env={"D4RL_DATASET_DIR": str(tmp_path / "nowhere")},
        )
    )
    assert "not downloaded" in line and "curl" in line
    line = _one_line_error(_run([*cmd, "walker3d-medium-v2", "-o", str(tmp_path / "x.hdf5")]))
    assert "unknown D4RL dataset" in line
    (tmp_path / "bad.hdf5").write_bytes(b"not hdf5 at all")
    line = _one_line_error(_run([*cmd, str(tmp_path / "bad.hdf5"), "-o", str(tmp_path / "x.hdf5")]))
    assert "not an HDF5 file" in line
    assert not (tmp_path / "x.hdf5").exists()


def test_script_convert_d4rl(tmp_path: Path) -> None:
    data = write_d4rl(tmp_path / "d.hdf5", next_obs=False)
    script = str(REPO / "converters" / "convert_d4rl.py")
    res = _run([script, str(tmp_path / "d.hdf5"), "-o", str(tmp_path / "o.hdf5"), "--no-progress"])
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(load_buffer(tmp_path / "o.hdf5").obs, ref_default(data)["obs"])
    line = _one_line_error(_run([script, str(tmp_path / "d.hdf5"), "-o", str(tmp_path / "o.hdf5")]))
    assert "output exists" in line


def test_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_d4rl(tmp_path / "d.hdf5")
    convert_d4rl(tmp_path / "d.hdf5", tmp_path / "o.hdf5", progress=True)
    err = capsys.readouterr().err
    assert "converting d" in err and "120/120" in err

"""The quality table's data (:mod:`benchmarks.quality_table`): the families made with
:func:`~tianshou_offline.datasets.make_datasets`, the scripted MountainCar recording, the
committed generating policies, and the arrays d3rlpy's process reads."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from benchmarks._lib import results
from benchmarks._lib.quality_specs import FAMILIES_DIR, SCALES, RowSpec, Scale

_T = TypeVar("_T")


def family_config(scale: Scale, env: str) -> Any:
    """The :class:`~tianshou_offline.datasets.FamilyConfig` of ``env``'s family at ``scale``
    (the same settings every time, so that a made family is reused)."""
    from tianshou_offline.datasets import FamilyConfig

    return FamilyConfig(
        budget=scale.online_budget[env],
        dataset_steps=scale.dataset_steps,
        eval_episodes=scale.family_eval_episodes,
        reference_episodes=scale.reference_episodes,
        seed=0,
    )


def scripted_mountain_car(obs: Any) -> int:
    """Energy pumping: push in the direction of the velocity (about −110 per episode)."""
    return 2 if float(obs[1]) >= 0.0 else 0


def record_mountain_car(
    path: Path, *, episodes: int, eps: float = 0.3, seed: int = 0, reference_episodes: int = 100
) -> Path:
    """Record ``episodes`` episodes of MountainCar-v0 driven by :func:`scripted_mountain_car`
    with ε-random actions into ``path`` with an ``EpisodeRecorder`` (what a user does with
    their own controller), storing the reference scores: the mean returns of uniformly random
    actions and of the noise-free controller over ``reference_episodes`` episodes."""
    import gymnasium as gym
    import numpy as np

    from tianshou_offline.datasets import EnvSource
    from tianshou_offline.datasets.online import evaluate
    from tianshou_offline.recording import EpisodeRecorder

    source = EnvSource("MountainCar-v0")
    space = gym.spaces.Discrete(3)
    space.seed(seed)
    lo, _, _ = evaluate(
        lambda _o: int(space.sample()), source, episodes=reference_episodes, seed=seed + 1
    )
    hi, _, _ = evaluate(scripted_mountain_car, source, episodes=reference_episodes, seed=seed + 2)
    rng = np.random.default_rng(seed)

    def behaviour(obs: Any) -> int:
        return int(rng.integers(3)) if rng.random() < eps else scripted_mountain_car(obs)

    env = EpisodeRecorder(
        gym.make("MountainCar-v0"),
        path,
        if_exists="overwrite",
        episode_metadata=lambda ep: {"return": ep.episode_return, "length": ep.length},
        provenance_extra={
            "policy": f"scripted energy pumping with eps={eps} random actions",
            "seed": seed,
            "ref_min_score": lo,
            "ref_max_score": hi,
            "reference": f"uniform random / noise-free scripted, {reference_episodes} episodes",
        },
    )
    try:
        obs, _ = env.reset(seed=seed)
        for _ in range(episodes):
            done = False
            while not done:
                obs, _, terminated, truncated, _ = env.step(behaviour(obs))
                done = bool(terminated or truncated)
            obs, _ = env.reset()
    finally:
        env.close()
    return path


def _when_free(make: Callable[[], _T], where: Path, poll_s: float = 5.0) -> _T:
    """``make()``, retried while another process holds ``where``'s lock: the table's two
    sides (``--sides ours`` and ``--sides d3rlpy`` in two processes) read the same families,
    and the first to start makes or checks them while the other waits."""
    from tianshou_offline.errors import OutputBusyError

    said = False
    while True:
        try:
            return make()
        except OutputBusyError:
            if not said:
                print(f"{where}: another process is making or checking it; waiting",
                      file=sys.stderr, flush=True)  # fmt: skip
                said = True
            time.sleep(poll_s)


def prepare_data(rows: Sequence[RowSpec], scale_name: str, data_dir: Path) -> dict[str, Path]:
    """The file of every row: families made (or continued, or reused) with
    :func:`~tianshou_offline.datasets.make_datasets`, the MountainCar file recorded once."""
    from tianshou_offline.datasets import make_datasets

    scale = SCALES[scale_name]
    root = data_dir / scale_name
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for env in dict.fromkeys(r.env for r in rows if r.level != "scripted"):
        levels = tuple(sorted({r.level for r in rows if r.env == env}))
        print(f"family {env} in {root / env} ...", file=sys.stderr, flush=True)
        config = dataclasses.replace(family_config(scale, env), levels=levels)
        result = _when_free(
            functools.partial(make_datasets, env, root / env, config=config), root / env
        )
        for r in rows:
            if r.env == env:
                files[r.key] = result.levels[r.level].path
    for r in rows:
        if r.level == "scripted":
            path = root / f"mountaincar-scripted-{scale.mountaincar_episodes}.hdf5"
            if not path.exists():
                record_mountain_car(
                    path, episodes=scale.mountaincar_episodes,
                    reference_episodes=scale.reference_episodes,
                )  # fmt: skip
            files[r.key] = path
    return files


def keep_family_policies(
    rows: Sequence[RowSpec], scale_name: str, data_dir: Path, dest: Path = FAMILIES_DIR
) -> list[Path]:
    """Copy each made family's manifest (``family.json``: settings, seed, every checkpoint's
    return and SHA-256, the files' SHA-256) and its two generating policies (the ``medium``
    and ``expert`` checkpoints) to ``dest/SCALE/ENV`` — small files that are committed, so
    that a reader can check the families (``tianshou-offline make-datasets`` with the
    manifest's settings makes them again, "same seed, same data") and record with the same
    policies (``tianshou-offline record``). Returns the files copied (none when kept)."""
    import shutil

    copied = []
    for env in dict.fromkeys(r.env for r in rows if r.level != "scripted"):
        src = data_dir / scale_name / env
        manifest = json.loads((src / "family.json").read_text())
        out = dest / scale_name / env
        refs = manifest["reference_scores"]
        names = ["family.json"] + [
            f"online/{refs[c]['policy']}" for c in ("medium_checkpoint", "expert_checkpoint")
        ]
        for name in names:
            target = out / name
            if target.exists() and target.read_bytes() == (src / name).read_bytes():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, target)
            copied.append(target)
    return copied


def arrays_path(path: Path) -> Path:
    """Where :func:`export_arrays` keeps ``path``'s arrays (named by its content)."""
    return path.with_suffix(f".{_sha256(path)[:12]}.npz")


def export_arrays(path: Path, out: Path) -> Path:
    """The file's transitions as plain arrays for d3rlpy's process (``.npz``: observations,
    actions, rewards, terminals, timeouts — an episode ends at every ``done``)."""
    import numpy as np

    from tianshou_offline import load_buffer

    if out.exists():
        return out
    buf = load_buffer(path)
    batch = buf[np.arange(len(buf))]
    terminated = np.asarray(batch.terminated, dtype=bool)
    done = np.asarray(batch.done, dtype=bool)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        observations=np.asarray(batch.obs, dtype=np.float32),
        actions=np.asarray(batch.act),
        rewards=np.asarray(batch.rew, dtype=np.float32),
        terminals=terminated.astype(np.float32),
        timeouts=(done & ~terminated).astype(np.float32),
    )
    os.replace(tmp, out)
    return out


@functools.cache
def _sha256(path: Path) -> str:
    return results.file_sha256(path)

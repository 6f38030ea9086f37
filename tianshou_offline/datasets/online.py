"""The online phase of a family: train an agent in the environment, evaluate and keep a policy
checkpoint every ``checkpoint_every`` steps, and keep every transition it collected (the
replay data that ``medium-replay`` is cut from).

Resumable: at each checkpoint the run's whole state — the algorithm with its optimizers, the
collected transitions, the replay buffer's sampling state, torch's and the agent's random
generators, the evaluation history — is written atomically to ``state.pt`` in the state
directory. A rerun with the same settings continues from the last checkpoint and ends with the
same result as a run that was never interrupted: each segment between two checkpoints starts
from a fresh episode (the episode running at a checkpoint is cut there, as truncated, and the
environment is reset with a seed derived from the run's seed and the segment's index).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tianshou.data import Batch, ReplayBuffer

from tianshou_offline.data.atomic import atomic_output, file_sha256, torch_save
from tianshou_offline.datasets.agents import OnlineAgent
from tianshou_offline.datasets.envs import EnvSource
from tianshou_offline.errors import DatasetFormatError, OutputExistsError
from tianshou_offline.progress import Progress

log = logging.getLogger(__name__)

STATE_FORMAT = "tianshou-offline-online-run"
STATE_VERSION = 1
STATE_FILE = "state.pt"
"""The run's state, in the state directory."""


@dataclass(frozen=True)
class Checkpoint:
    """One evaluated policy of the online run."""

    env_step: int
    """Environment steps collected when it was saved."""
    eval_return: float
    """Mean undiscounted return of its deterministic policy over the evaluation episodes."""
    eval_std: float
    policy: str
    """The policy checkpoint, relative to the state directory."""
    sha256: str
    """SHA-256 of the policy checkpoint file."""


@dataclass
class OnlineRun:
    """What the online phase produced."""

    checkpoints: list[Checkpoint]
    columns: dict[str, np.ndarray]
    """Every collected transition in order: ``obs``, ``act`` (env units), ``rew``,
    ``terminated``, ``truncated``, ``obs_next``."""
    state_dir: Path
    resumed_from: int
    """Environment steps that were restored from an earlier run (0: started afresh)."""

    def policy_path(self, checkpoint: Checkpoint) -> Path:
        return self.state_dir / checkpoint.policy


def evaluate(
    act: Any, source: EnvSource, *, episodes: int, seed: int, bar: Progress | None = None
) -> tuple[float, float, list[float]]:
    """Mean and standard deviation of the undiscounted return of ``act`` (obs → env action)
    over ``episodes`` episodes of a new environment; the first reset is seeded with ``seed``
    (so every call with the same seed sees the same initial states). ``bar`` counts
    episodes."""
    from tianshou_offline.recording.dt_policies import play_episode

    env = source.make()
    returns: list[float] = []
    try:
        obs, _ = env.reset(seed=seed)
        while len(returns) < episodes:
            returns.append(play_episode(env, act, obs))
            if bar is not None:
                bar.update(1)
            obs, _ = env.reset()
    finally:
        env.close()
    arr = np.asarray(returns, dtype=np.float64)
    return float(arr.mean()), float(arr.std()), returns


def _segment_seed(seed: int, segment: int) -> int:
    return int(np.random.SeedSequence([seed, 1, segment]).generate_state(1)[0])


def eval_seed(seed: int) -> int:
    """The seed of the evaluation episodes of every checkpoint of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, 3]).generate_state(1)[0])


class _Columns:
    """Pre-allocated transition columns (``budget`` rows) filled in order."""

    def __init__(self, budget: int, obs: np.ndarray, act_buffer: np.ndarray, act_env: Any) -> None:
        self.n = 0
        env_act = np.asarray(act_env)
        self.obs = np.empty((budget, *obs.shape), dtype=obs.dtype)
        self.obs_next = np.empty_like(self.obs)
        self.act = np.empty((budget, *env_act.shape), dtype=env_act.dtype)
        self.act_buffer = np.empty((budget, *act_buffer.shape), dtype=act_buffer.dtype)
        self.rew = np.empty(budget, dtype=np.float64)
        self.terminated = np.zeros(budget, dtype=bool)
        self.truncated = np.zeros(budget, dtype=bool)

    def names(self) -> tuple[str, ...]:
        return ("obs", "obs_next", "act", "act_buffer", "rew", "terminated", "truncated")

    def view(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k)[: self.n] for k in self.names()}


def _buffer_row(cols: _Columns, i: int) -> Batch:
    return Batch(
        obs=cols.obs[i],
        act=cols.act_buffer[i],
        rew=cols.rew[i],
        terminated=cols.terminated[i],
        truncated=cols.truncated[i],
        obs_next=cols.obs_next[i],
        info={},
    )


def run_online(
    agent: OnlineAgent,
    source: EnvSource,
    *,
    budget: int,
    seed: int,
    checkpoint_every: int,
    eval_episodes: int,
    state_dir: Path,
    settings: Mapping[str, Any],
    bar: Progress,
) -> OnlineRun:
    """Train ``agent`` for ``budget`` environment steps (see the module docstring).

    :param settings: JSON-able settings of the run; a state directory written with other
        settings is refused.
    :param bar: progress, counted in environment steps.
    :raises OutputExistsError: ``state_dir`` holds a run with other settings.
    :raises DatasetFormatError: its state file is not one (damaged).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "policies").mkdir(exist_ok=True)
    state_path = state_dir / STATE_FILE
    settings_json = json.dumps(settings, sort_keys=True, default=str)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _run(
            agent, source, budget=budget, seed=seed, checkpoint_every=checkpoint_every,
            eval_episodes=eval_episodes, state_dir=state_dir, state_path=state_path,
            settings_json=settings_json, bar=bar,
        )  # fmt: skip


def _run(
    agent: OnlineAgent,
    source: EnvSource,
    *,
    budget: int,
    seed: int,
    checkpoint_every: int,
    eval_episodes: int,
    state_dir: Path,
    state_path: Path,
    settings_json: str,
    bar: Progress,
) -> OnlineRun:
    env = source.make()
    try:
        rng = np.random.default_rng([seed, 2])
        obs0, _ = env.reset(seed=_segment_seed(seed, 0))
        act0, env_act0 = agent.random_action(np.random.default_rng(0))
        cols = _Columns(budget, np.asarray(obs0), act0, env_act0)
        buffer = ReplayBuffer(budget, random_seed=seed)
        checkpoints: list[Checkpoint] = []
        updates_owed = 0.0
        resumed = 0
        saved = state_path.exists()  # a state of this run's own to replace at each checkpoint
        if saved:
            state = _load_state(state_path, settings_json)
            checkpoints = [Checkpoint(**c) for c in state["checkpoints"]]
            n = int(state["env_step"])
            for name in cols.names():
                getattr(cols, name)[:n] = state["columns"][name].numpy()
            cols.n = n
            if n < budget:  # training continues: the replay buffer and the learner as they were
                for i in range(n):
                    buffer.add(_buffer_row(cols, i))
            agent.algorithm.load_state_dict(state["algorithm"])
            agent.load_extra_state(state["agent"])
            buffer._random_state.set_state(_unpack_mt(state["buffer_rng"]))
            rng.bit_generator.state = json.loads(state["rng"])
            torch.set_rng_state(state["torch_rng"])
            updates_owed = float(state["updates_owed"])
            resumed = n
            bar.update(n)
            log.info("resuming the online run in %s at step %d", state_dir, n)
        step = cols.n
        while step < budget:
            segment = step // checkpoint_every
            seg_end = min((segment + 1) * checkpoint_every, budget)
            obs = np.asarray(env.reset(seed=_segment_seed(seed, segment))[0])
            while step < seg_end:
                if step < agent.start_steps:
                    buf_act, env_act = agent.random_action(rng)
                else:
                    buf_act, env_act = agent.explore(obs, step, rng)
                obs_next, rew, terminated, truncated, _ = env.step(env_act)
                obs_next = np.asarray(obs_next)
                i = cols.n
                cols.obs[i], cols.obs_next[i] = obs, obs_next
                cols.act[i], cols.act_buffer[i] = env_act, buf_act
                cols.rew[i] = float(rew)
                cols.terminated[i] = bool(terminated)
                cols.truncated[i] = bool(truncated) or (step + 1 == seg_end and not terminated)
                cols.n += 1
                buffer.add(_buffer_row(cols, i))
                step += 1
                bar.update(1)
                if step > agent.start_steps:
                    updates_owed += agent.updates_per_step
                    while updates_owed >= 1.0:
                        agent.update(buffer)
                        updates_owed -= 1.0
                if terminated or truncated:
                    obs = np.asarray(env.reset()[0])
                else:
                    obs = obs_next
            mean, std, _ = evaluate(
                agent.greedy, source, episodes=eval_episodes, seed=eval_seed(seed)
            )
            rel = f"policies/step_{step:09d}.pt"
            agent.save_policy(state_dir / rel)
            checkpoints.append(Checkpoint(step, mean, std, rel, file_sha256(state_dir / rel)))
            log.info("online step %d: evaluation return %.2f ± %.2f", step, mean, std)
            _save_state(
                state_path,
                {
                    "format": STATE_FORMAT,
                    "version": STATE_VERSION,
                    "settings": settings_json,
                    "env_step": step,
                    "checkpoints": [asdict(c) for c in checkpoints],
                    "columns": {
                        k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in cols.view().items()
                    },
                    "algorithm": agent.algorithm.state_dict(),
                    "agent": agent.extra_state(),
                    "buffer_rng": _pack_mt(buffer._random_state.get_state()),
                    "rng": json.dumps(rng.bit_generator.state),
                    "torch_rng": torch.get_rng_state(),
                    "updates_owed": updates_owed,
                },
                overwrite=saved,
            )
            saved = True
    finally:
        env.close()
    view = cols.view()
    return OnlineRun(
        checkpoints=checkpoints,
        columns={k: view[k] for k in ("obs", "act", "rew", "terminated", "truncated", "obs_next")},
        state_dir=state_dir,
        resumed_from=resumed,
    )


def _pack_mt(state: Any) -> list[Any]:
    """numpy ``RandomState.get_state()`` as plain data (weights-only loadable)."""
    name, keys, pos, has_gauss, cached = state
    return [str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos),
            int(has_gauss), float(cached)]  # fmt: skip


def _unpack_mt(packed: list[Any]) -> tuple[Any, ...]:
    name, keys, pos, has_gauss, cached = packed
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


def _save_state(path: Path, state: dict[str, Any], *, overwrite: bool) -> None:
    """``torch.save`` atomically (:func:`~tianshou_offline.data.atomic.atomic_output`, tag
    ``state``; temporaries of killed runs removed first).
    ``overwrite=False`` for a new run's first state: a ``state.pt`` that appeared meanwhile
    (another run in the same directory) is left untouched and
    :class:`~tianshou_offline.errors.OutputExistsError` raised; later saves replace the run's
    own state."""
    with atomic_output(path, overwrite=overwrite, tag="state") as tmp:
        torch_save(state, tmp)


def _load_state(path: Path, settings_json: str) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DatasetFormatError(
            f"{path}: not an online-run state written by make-datasets ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:160]}); remove it or pass --overwrite"
        ) from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DatasetFormatError(
            f"{path}: field 'format' is not {STATE_FORMAT!r}; remove it or pass --overwrite"
        )
    if state.get("settings") != settings_json:
        old = json.loads(str(state.get("settings") or "{}"))
        new = json.loads(settings_json)
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        first = diff[0] if diff else "?"
        raise OutputExistsError(
            f"{path.parent}: holds an online run with other settings ({first}: found "
            f"{old.get(first)!r}, expected {new.get(first)!r}); pass --overwrite "
            "(overwrite=True) to start again, or use another output directory"
        )
    return state

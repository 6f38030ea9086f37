"""Record gymnasium episodes straight into the tianshou-offline HDF5 format.

:class:`EpisodeRecorder` is a ``gymnasium.Wrapper``: use the env as usual and every finished
episode is appended to the file and committed (HDF5 SWMR, flushed per episode). A process
killed at any moment loses at most the episode in progress; the file keeps every committed
episode and stays readable (``load_buffer`` opens it as it is; ``repair_file`` /
``tianshou-offline repair`` rewrites it cleanly for tools that need a closed file, and a
recorder re-opening it with ``if_exists="append"`` does so automatically).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np

from tianshou_offline.data.atomic import (
    is_write_failure,
    publish,
    remove_stale_temps,
    remove_temp,
    temp_path,
    write_error,
)
from tianshou_offline.data.format import Provenance
from tianshou_offline.data.writer import BufferWriter, Compression
from tianshou_offline.errors import (
    DataValidationError,
    OutputExistsError,
    OutputWriteError,
    StackNumMismatchError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RecordedEpisode:
    """A finished episode, handed to the ``episode_metadata`` callback.

    Arrays have T rows (one per step); ``obs`` holds the T observations the actions were
    taken in and ``obs_next`` the T observations that followed (``None`` when the recorder
    stores only the newest frame of stacked observations; ``obs`` then holds those frames).
    """

    index: int
    obs: Any
    obs_next: Any
    act: np.ndarray
    rew: np.ndarray
    terminated: bool
    truncated: bool
    infos: list[dict[str, Any]]

    @property
    def length(self) -> int:
        return int(self.rew.shape[0])

    @property
    def episode_return(self) -> float:
        return float(np.sum(self.rew))


def stack_steps(items: Sequence[Any]) -> Any:
    """Stack per-step values into arrays, keeping Dict/Tuple observation structure."""
    first = items[0]
    if isinstance(first, Mapping):
        return {k: stack_steps([it[k] for it in items]) for k in first}
    if isinstance(first, tuple):
        return tuple(stack_steps([it[i] for it in items]) for i in range(len(first)))
    return np.stack([np.asarray(it) for it in items])


class EpisodeRecorder(gym.Wrapper[Any, Any, Any, Any]):
    """A gymnasium wrapper that appends every finished episode to an HDF5 buffer file.

    :param env: the environment to record.
    :param path: the output file (``docs/FORMAT.md``).
    :param if_exists: ``"error"`` (default) refuses an existing file, ``"append"`` continues it
        (repairing it first if its recorder was killed), ``"overwrite"`` replaces it — the old
        file stays in place until the first new episode is committed.
    :param episode_metadata: called with each :class:`RecordedEpisode`; returns scalar
        attributes (e.g. ``{"return": ..., "is_expert": True}``) stored per episode. Every
        episode must return the same keys.
    :param info_keys: keys of the step ``info`` dict to record as columns (numeric values).
    :param store_obs_next: store ``obs_next`` explicitly (default). False keeps one obs per
        step (obs_next rebuilt from the next row; the final obs of each episode is lost).
    :param stack_num: the env's observations are stacks of this many frames (e.g.
        gymnasium's ``FrameStackObservation``); recorded as Tianshou's ``stack_num``.
    :param save_only_last_obs: with ``stack_num > 1``, store only the newest frame of each
        stacked observation (``obs[-1]``, one frame per step instead of ``stack_num``); the
        loaded buffer rebuilds the stacks (Tianshou's ``save_only_last_obs``; episode starts
        repeat the first frame, as ``FrameStackObservation``'s default padding). Needs
        ``store_obs_next=False``. :class:`RecordedEpisode` then holds frames ``(T, *frame)``.
    :param compression: ``None``, ``"gzip"`` or ``"lzf"``.
    :param provenance_extra: JSON-able facts stored with the provenance (e.g. the policy).
    :param dataset_id: a name for the data (defaults to the env id).
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        path: str | os.PathLike[str],
        *,
        if_exists: Literal["error", "append", "overwrite"] = "error",
        episode_metadata: Callable[[RecordedEpisode], Mapping[str, Any]] | None = None,
        info_keys: Sequence[str] = (),
        store_obs_next: bool = True,
        stack_num: int = 1,
        save_only_last_obs: bool = False,
        compression: Compression = None,
        provenance_extra: Mapping[str, Any] | None = None,
        dataset_id: str | None = None,
    ) -> None:
        super().__init__(env)
        if save_only_last_obs:
            shape = getattr(env.observation_space, "shape", None)
            if stack_num < 2 or not shape or len(shape) < 2 or shape[0] != stack_num:
                raise ValueError(
                    f"save_only_last_obs=True needs stacked observations with stack_num >= 2 "
                    f"frames on the first axis; observation space is {env.observation_space}, "
                    f"stack_num={stack_num}"
                )
            if store_obs_next:
                raise ValueError(
                    "save_only_last_obs=True stores one frame per step; pass store_obs_next=False"
                )
        self.stack_num = stack_num
        self.save_only_last_obs = save_only_last_obs
        self.path = Path(path)
        self._new_file = not self.path.exists()
        if if_exists not in ("error", "append", "overwrite"):
            raise ValueError(f"if_exists={if_exists!r}: expected 'error', 'append' or 'overwrite'")
        if self.path.exists():
            if if_exists == "error":
                raise OutputExistsError(
                    f"{self.path}: output exists; pass if_exists='append' to add episodes or "
                    "'overwrite' to replace it (CLI: --append / --overwrite)"
                )
            if if_exists == "overwrite":
                # replaced atomically when the first new episode is committed
                self._replace_target: Path | None = self.path
            else:
                self._replace_target = None
        else:
            self._replace_target = None
        self.episode_metadata = episode_metadata
        self.info_keys = tuple(info_keys)
        self.store_obs_next = store_obs_next
        env_id = env.spec.id if env.spec is not None else None
        env_spec: str | None = None
        if env.spec is not None:
            try:
                env_spec = env.spec.to_json()
            except Exception:  # kwargs that JSON cannot hold (callables, objects)
                env_spec = None
        write_path = self.path
        if self._replace_target is not None:
            remove_stale_temps(self.path)
            write_path = temp_path(self.path, "new")
        self._write_path = write_path
        self._writer = BufferWriter(
            write_path,
            observation_space=env.observation_space,
            action_space=env.action_space,
            env_id=env_id,
            env_spec=env_spec,
            provenance=Provenance(
                source="recorded",
                dataset_id=dataset_id or env_id,
                converter="tianshou_offline.recording.EpisodeRecorder",
                extra=dict(provenance_extra or {}),
            ),
            compression=compression,
            store_obs_next=store_obs_next,
            stack_num=stack_num,
            save_only_last_obs=save_only_last_obs,
            append=True,
        )
        stored = (self._writer.stack_num, self._writer.save_only_last_obs)
        if stored != (stack_num, save_only_last_obs):  # appending: the file's settings
            self._writer.abort()
            raise StackNumMismatchError(
                f"{self.path}: stores stack_num={stored[0]} (save_only_last_obs={stored[1]}); "
                f"appending with stack_num={stack_num} (save_only_last_obs="
                f"{save_only_last_obs}) was requested (CLI: --frames-stack {stored[0]})"
            )
        existing_keys = self._writer.metadata_keys
        if existing_keys and episode_metadata is None:
            self._writer.abort()
            raise DataValidationError(
                f"{self.path}: its episodes carry metadata {existing_keys}; pass an "
                "episode_metadata callback that returns the same keys to append to it"
            )
        self._reset_episode()
        self._last_obs: Any = None

    @property
    def num_episodes(self) -> int:
        """Episodes committed to the file (including those already in it when appending)."""
        return self._writer.num_episodes

    @property
    def num_transitions(self) -> int:
        return self._writer.num_transitions

    def _reset_episode(self) -> None:
        self._obs: list[Any] = []
        self._obs_next: list[Any] = []
        self._act: list[Any] = []
        self._rew: list[float] = []
        self._infos: list[dict[str, Any]] = []

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if self._rew:
            log.info(
                "discarding an unfinished episode of %d steps (reset before it ended)",
                len(self._rew),
            )
        self._reset_episode()
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._last_obs is None:
            raise RuntimeError("EpisodeRecorder.step() called before reset()")
        obs, rew, terminated, truncated, info = self.env.step(action)
        if self.save_only_last_obs:
            self._obs.append(np.array(self._last_obs[-1]))  # the newest frame only
        else:
            self._obs.append(self._last_obs)
            self._obs_next.append(obs)
        self._act.append(np.asarray(action))
        self._rew.append(float(rew))
        self._infos.append(info)
        self._last_obs = obs
        if terminated or truncated:
            self._commit(bool(terminated), bool(truncated))
        return obs, rew, terminated, truncated, info

    def _commit(self, terminated: bool, truncated: bool) -> None:
        t = len(self._rew)
        term = np.zeros(t, dtype=bool)
        trunc = np.zeros(t, dtype=bool)
        term[-1] = terminated
        trunc[-1] = truncated and not terminated
        obs = stack_steps(self._obs)
        obs_next = stack_steps(self._obs_next) if self._obs_next else None
        act = np.stack(self._act)
        rew = np.asarray(self._rew, dtype=np.float64)
        info_cols: dict[str, np.ndarray] | None = None
        if self.info_keys:
            info_cols = {}
            for key in self.info_keys:
                missing = [i for i, inf in enumerate(self._infos) if key not in inf]
                if missing:
                    raise DataValidationError(
                        f"info key {key!r} is missing at step {missing[0]} of episode "
                        f"{self.num_episodes}; expected it at every step"
                    )
                info_cols[key] = np.stack([np.asarray(inf[key]) for inf in self._infos])
        metadata = None
        if self.episode_metadata is not None:
            metadata = dict(
                self.episode_metadata(
                    RecordedEpisode(
                        index=self.num_episodes,
                        obs=obs,
                        obs_next=obs_next,
                        act=act,
                        rew=rew,
                        terminated=terminated,
                        truncated=truncated,
                        infos=self._infos,
                    )
                )
            )
        committed = self.num_episodes
        try:
            self._writer.add_episode(
                obs=obs,
                act=act,
                rew=rew,
                terminated=term,
                truncated=trunc,
                obs_next=obs_next if self.store_obs_next else None,
                info=info_cols,
                metadata=metadata,
            )
            self._writer.flush()
            if self._replace_target is not None:
                # first committed episode of an overwrite: move the new file into place
                self._writer.close()
                publish(self._write_path, self._replace_target, overwrite=True)
                self._replace_target = None
                self._writer = BufferWriter(self.path, append=True)
                self._write_path = self.path
        except Exception as e:
            self._fail(e, committed)
            raise
        self._reset_episode()

    def _fail(self, e: Exception, committed: int) -> None:
        """After a failed commit: nothing of an overwrite reaches the file it replaces (the
        new file is deleted; the old one stays as it was); an append keeps every episode
        committed before (the writer closed the file; the episode whose commit failed may be
        there too, complete, when the failure came after its data: as after a kill); a new
        file with nothing committed is removed. A failed write becomes
        :class:`~tianshou_offline.errors.OutputWriteError` naming :attr:`path`."""
        ours = self._new_file and committed == 0 and self._writer.in_place
        self._writer.abort()
        if self._replace_target is not None:
            remove_temp(self._write_path)
        elif ours:
            # the first commit failed after this run moved its new file into place (reopening
            # it for SWMR writing writes to it): it holds nothing committed
            remove_temp(self.path)
        cause = e.__cause__ if isinstance(e, OutputWriteError) else e
        if isinstance(cause, Exception) and (cause is not e or is_write_failure(e)):
            if not self.path.parent.exists():
                kept = "the file went with its directory"
            elif self._replace_target is not None:
                kept = "the file it was to replace is as it was"
            else:
                kept = f"the {committed} episodes committed before are kept"
            raise write_error(self.path, cause, kept=kept) from cause

    def close(self) -> None:
        """Close the file (the episode in progress, if any, is discarded) and the env."""
        try:
            if self._writer.num_episodes > 0 or self._writer.num_transitions > 0:
                self._writer.close()
            else:
                self._writer.abort()
        finally:
            super().close()

"""Atari environments on today's stack (gymnasium 1.x, ale-py with bundled ROMs, numpy 2)
and compact Atari buffers.

Tianshou 2.0.1's ``tianshou.env.atari`` wrappers fail with numpy 2 / gymnasium 1.4; this
module builds the same preprocessing from gymnasium's own wrappers:

- ``AtariPreprocessing``: up to 30 no-op starts, frame skip 4 with max-pooling of the last
  two frames, 84×84 grayscale ``uint8`` frames (Machado et al. 2018 / DQN conventions);
- ``FrameStackObservation``: the last ``frame_stack`` frames, oldest first, shape
  ``(frame_stack, 84, 84)``; an episode starts with its first frame repeated (the
  ``"reset"`` padding), which is exactly what Tianshou's ``stack_num`` rebuilds from a
  buffer that holds one frame per step.

Optional training-time wrappers of the DeepMind setup (life loss as episode end, reward
clipping) are off by default: recorded data and evaluation use the true game.

A **compact buffer** holds one 84×84 frame per step (``obs[-1]`` of each stacked
observation) with Tianshou's ``stack_num=frame_stack``, ``save_only_last_obs=True`` and
``ignore_obs_next=True`` settings: a 1M-step buffer needs ~7 GB of frames instead of 56 GB for
stacked ``obs`` and ``obs_next``. :func:`compact_recorder` records one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np

from tianshou_offline.errors import MissingDependencyError

if TYPE_CHECKING:
    from tianshou.env import BaseVectorEnv

    from tianshou_offline.recording import EpisodeRecorder

__all__ = [
    "ATARI_FRAME_STACK",
    "compact_recorder",
    "is_atari_env_id",
    "make_atari_env",
    "make_atari_vector_env",
    "register_atari_envs",
]

ATARI_FRAME_STACK = 4
"""Frames per observation in the DQN setup."""


def register_atari_envs() -> None:
    """Register ale-py's environments with gymnasium (idempotent).

    :raises MissingDependencyError: ale-py is not installed.
    """
    try:
        import ale_py
    except ImportError as e:
        raise MissingDependencyError(
            "Atari environments need ale-py (pip install 'tianshou-offline[atari]'; its wheels "
            "bundle the ROMs)"
        ) from e
    gym.register_envs(ale_py)


def is_atari_env_id(env_id: str) -> bool:
    """Whether ``env_id`` names an ale-py environment (``PongNoFrameskip-v4``,
    ``ALE/Pong-v5``, …)."""
    if env_id.startswith("ALE/"):
        return True
    spec = gym.registry.get(env_id)
    if spec is None:
        try:
            register_atari_envs()
        except MissingDependencyError:
            return "NoFrameskip" in env_id
        spec = gym.registry.get(env_id)
    if spec is None:
        return False
    entry = spec.entry_point
    return isinstance(entry, str) and entry.startswith("ale_py")


def make_atari_env(
    task: str,
    *,
    frame_stack: int = ATARI_FRAME_STACK,
    seed: int | None = None,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    terminal_on_life_loss: bool = False,
    clip_rewards: bool = False,
    scale_obs: bool = False,
    max_episode_steps: int | None = None,
    repeat_action_probability: float | None = None,
    render_mode: str | None = None,
) -> gym.Env[Any, Any]:
    """An Atari env with DQN preprocessing and frame stacking.

    :param task: an ale-py id, e.g. ``PongNoFrameskip-v4`` or ``ALE/Pong-v5`` (for v5 ids the
        env's own frame skip is turned off; ``AtariPreprocessing`` skips frames).
    :param frame_stack: frames per observation (1: no stacking, observations ``(84, 84)``).
    :param seed: seeds the env's first reset and its action space.
    :param noop_max: at most this many no-op actions after a reset.
    :param frame_skip: repeat each action this many frames (max-pooling the last two).
    :param screen_size: side of the square frames.
    :param terminal_on_life_loss: end episodes on a life loss (DeepMind training setup).
    :param clip_rewards: clip rewards to their sign (DeepMind training setup).
    :param scale_obs: float32 frames in [0, 1] instead of uint8 (not for recording: 4× larger).
    :param max_episode_steps: a time limit in agent steps (None: the game's own limit of
        108,000 frames).
    :param repeat_action_probability: sticky actions (default: the id's own setting).
    :param render_mode: passed to ``gym.make``.
    :returns: observations ``(frame_stack, screen_size, screen_size)`` uint8, ``Discrete``
        actions.
    :raises MissingDependencyError: ale-py is missing.
    :raises ValueError: not an Atari id.
    """
    register_atari_envs()
    if not is_atari_env_id(task):
        raise ValueError(
            f"{task!r} is not an ale-py Atari environment id (e.g. PongNoFrameskip-v4)"
        )
    kwargs: dict[str, Any] = {}
    spec = gym.registry[task]
    if int(spec.kwargs.get("frameskip", 1)) != 1:
        kwargs["frameskip"] = 1
    if repeat_action_probability is not None:
        kwargs["repeat_action_probability"] = repeat_action_probability
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    env: gym.Env[Any, Any] = gym.make(task, **kwargs)
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        terminal_on_life_loss=terminal_on_life_loss,
        grayscale_obs=True,
        scale_obs=scale_obs,
    )
    if max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(env, max_episode_steps)
    if clip_rewards:
        env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(float(r))))
    if frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, frame_stack)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def make_atari_vector_env(
    task: str,
    num_envs: int,
    *,
    seed: int | None = None,
    kind: Literal["dummy", "subproc"] = "dummy",
    **kwargs: Any,
) -> BaseVectorEnv:
    """``num_envs`` copies of :func:`make_atari_env` as a Tianshou vector env (for the test
    collector), seeded ``seed, seed + 1, …``.

    :param kind: ``"dummy"`` (one process) or ``"subproc"`` (one process per env).
    :param kwargs: passed to :func:`make_atari_env`.
    """
    from tianshou.env import DummyVectorEnv, SubprocVectorEnv

    register_atari_envs()
    fns = [lambda: make_atari_env(task, **kwargs) for _ in range(num_envs)]
    venv: BaseVectorEnv = SubprocVectorEnv(fns) if kind == "subproc" else DummyVectorEnv(fns)
    if seed is not None:
        venv.seed([seed + i for i in range(num_envs)])
    return venv


def compact_recorder(
    env: gym.Env[Any, Any],
    path: str | os.PathLike[str],
    *,
    if_exists: Literal["error", "append", "overwrite"] = "error",
    compression: Literal["gzip", "lzf"] | None = None,
    provenance_extra: Mapping[str, Any] | None = None,
    dataset_id: str | None = None,
    with_metadata: bool = True,
) -> EpisodeRecorder:
    """Wrap a frame-stacked env in an :class:`~tianshou_offline.recording.EpisodeRecorder`
    that writes a compact buffer: one frame per step, ``stack_num`` = the env's stack size,
    ``save_only_last_obs=True``, no stored ``obs_next``.

    :param env: e.g. :func:`make_atari_env` (observations ``(S, H, W)``).
    :param with_metadata: store each episode's return and length as episode metadata.
    """
    from tianshou_offline.recording import EpisodeRecorder

    shape = getattr(env.observation_space, "shape", None)
    if not shape or len(shape) != 3:
        raise ValueError(
            f"observation space {env.observation_space}: expected stacked frames (S, H, W)"
        )
    return EpisodeRecorder(
        env,
        path,
        if_exists=if_exists,
        episode_metadata=(
            (lambda ep: {"return": ep.episode_return, "length": ep.length})
            if with_metadata
            else None
        ),
        store_obs_next=False,
        stack_num=int(shape[0]),
        save_only_last_obs=True,
        compression=compression,
        provenance_extra=provenance_extra,
        dataset_id=dataset_id,
    )

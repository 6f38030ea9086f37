"""Spaces on which every registered algorithm config builds (a small Box observation, a Box or a
Discrete action space by the config's action kind)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

OBS = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
SPACES: dict[str, gym.Space[Any]] = {
    "continuous": gym.spaces.Box(-2.0, 2.0, (3,), np.float32),
    "discrete": gym.spaces.Discrete(4),
}

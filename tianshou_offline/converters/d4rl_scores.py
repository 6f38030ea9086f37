"""D4RL reference scores, download locations and episode limits, without the ``d4rl`` package.

The numbers are those D4RL ships (``d4rl/infos.py`` and the environment registrations):
``ref_min_score`` is the mean return of a random policy, ``ref_max_score`` that of an expert
(for AntMaze, Kitchen: 0 and the maximum attainable success count). A D4RL *normalised score*
is ``100 · (return - ref_min_score) / (ref_max_score - ref_min_score)``: 0 a random policy, 100
an expert — the scale D4RL's papers print (``d4rl.get_normalized_score`` returns the same value
÷ 100). Every normalised score this package computes or prints uses this 0–100 scale.

Covered: the Gym-MuJoCo locomotion tasks (hopper, halfcheetah, walker2d, ant; v0, v1, v2),
AntMaze (v0, v1, v2), Adroit (pen, hammer, door, relocate; v0, v1), Kitchen (v0) and Maze2D
(sparse and dense, v0 and v1, including the ``eval`` mazes).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from tianshou_offline.errors import SourceNotFoundError

D4RL_URL_BASE = "http://rail.eecs.berkeley.edu/datasets/offline_rl"


@dataclass(frozen=True)
class D4RLDatasetInfo:
    """What D4RL knows about one of its datasets.

    :param name: the D4RL dataset (environment) name, e.g. ``hopper-medium-v2``.
    :param url: where D4RL downloads the HDF5 file from.
    :param ref_min_score: reference return of a random policy (undiscounted episode return).
    :param ref_max_score: reference return of an expert policy.
    :param max_episode_steps: the environment's time limit (steps per episode).
    """

    name: str
    url: str
    ref_min_score: float
    ref_max_score: float
    max_episode_steps: int

    @property
    def filename(self) -> str:
        """The file name D4RL caches the download under (the last part of the URL)."""
        return self.url.rsplit("/", 1)[-1]


def _build_table() -> dict[str, D4RLDatasetInfo]:
    table: dict[str, D4RLDatasetInfo] = {}

    def add(name: str, rel_url: str, lo: float, hi: float, steps: int) -> None:
        url = rel_url if rel_url.startswith("http") else f"{D4RL_URL_BASE}/{rel_url}"
        table[name] = D4RLDatasetInfo(name, url, lo, hi, steps)

    # Gym-MuJoCo locomotion: random / expert reference returns per robot.
    locomotion = {
        "hopper": (-20.272305, 3234.3),
        "halfcheetah": (-280.178953, 12135.0),
        "walker2d": (1.629008, 4592.3),
        "ant": (-325.6, 3879.7),
    }
    v0_files = {
        "random": "{env}_random",
        "medium": "{env}_medium",
        "expert": "{env}_expert",
        "medium-replay": "{env}_mixed",
        "medium-expert": "{env}_medium_expert",
    }
    for env, (lo, hi) in locomotion.items():
        for dset, pattern in v0_files.items():
            stem = pattern.format(
                env="walker" if env == "walker2d" and dset == "medium-replay" else env
            )
            add(f"{env}-{dset}-v0", f"gym_mujoco/{stem}.hdf5", lo, hi, 1000)
        for version in (1, 2):
            for dset in (
                "random",
                "medium",
                "expert",
                "medium-replay",
                "full-replay",
                "medium-expert",
            ):
                stem = f"{env}_{dset.replace('-', '_')}-v{version}"
                add(f"{env}-{dset}-v{version}", f"gym_mujoco_v{version}/{stem}.hdf5", lo, hi, 1000)

    # AntMaze: success (0/1) per episode.
    mazes = {
        "umaze": (700, "u-maze", "umaze"),
        "medium": (1000, "big-maze", "medium"),
        "large": (1000, "hardest-maze", "large"),
    }
    variants = {
        "umaze": ("umaze", False, False),
        "umaze-diverse": ("umaze", True, True),
        "medium-play": ("medium", True, False),
        "medium-diverse": ("medium", True, True),
        "large-play": ("large", True, False),
        "large-diverse": ("large", True, True),
    }
    for variant, (maze, multistart, multigoal) in variants.items():
        steps, v02_name, v1_name = mazes[maze]
        flags = f"noisy_multistart_{multistart}_multigoal_{multigoal}_sparse"
        add(
            f"antmaze-{variant}-v0",
            f"ant_maze_new/Ant_maze_{v02_name}_{flags}.hdf5",
            0.0,
            1.0,
            steps,
        )
        add(
            f"antmaze-{variant}-v1", f"ant_maze_v1/Ant_maze_{v1_name}_{flags}.hdf5", 0.0, 1.0, steps
        )
        add(
            f"antmaze-{variant}-v2",
            f"ant_maze_v2/Ant_maze_{v02_name}_{flags}_fixed.hdf5",
            0.0,
            1.0,
            steps,
        )

    # Adroit hand manipulation.
    adroit = {
        "pen": (96.262799, 3076.8331017826877, 100),
        "hammer": (-274.856578, 12794.134825156867, 200),
        "door": (-56.512833, 2880.5693087298737, 200),
        "relocate": (-6.425911, 4233.877797728884, 200),
    }
    for env, (lo, hi, steps) in adroit.items():
        add(f"{env}-human-v0", f"hand_dapg/{env}-v0_demos_clipped.hdf5", lo, hi, steps)
        add(f"{env}-cloned-v0", f"hand_dapg/{env}-demos-v0-bc-combined.hdf5", lo, hi, steps)
        add(f"{env}-expert-v0", f"hand_dapg/{env}-v0_expert_clipped.hdf5", lo, hi, steps)
        for dset in ("human", "cloned", "expert"):
            add(f"{env}-{dset}-v1", f"hand_dapg_v1/{env}-{dset}-v1.hdf5", lo, hi, steps)

    # Franka Kitchen: number of completed sub-tasks (0..4).
    add(
        "kitchen-complete-v0",
        "kitchen/mini_kitchen_microwave_kettle_light_slider-v0.hdf5",
        0.0,
        4.0,
        280,
    )
    add(
        "kitchen-partial-v0", "kitchen/kitchen_microwave_kettle_light_slider-v0.hdf5", 0.0, 4.0, 280
    )
    add(
        "kitchen-mixed-v0",
        "kitchen/kitchen_microwave_kettle_bottomburner_light-v0.hdf5",
        0.0,
        4.0,
        280,
    )

    # Maze2D: (name, file, random, expert, time limit).
    maze2d = [
        ("maze2d-open-v0", "maze2d-open-sparse", 0.01, 20.66, 150),
        ("maze2d-umaze-v0", "maze2d-umaze-sparse", 0.94, 62.6, 150),
        ("maze2d-medium-v0", "maze2d-medium-sparse", 5.77, 85.14, 250),
        ("maze2d-large-v0", "maze2d-large-sparse", 4.83, 191.99, 600),
        ("maze2d-umaze-v1", "maze2d-umaze-sparse-v1", 23.85, 161.86, 300),
        ("maze2d-medium-v1", "maze2d-medium-sparse-v1", 13.13, 277.39, 600),
        ("maze2d-large-v1", "maze2d-large-sparse-v1", 6.7, 273.99, 800),
        ("maze2d-eval-umaze-v1", "maze2d-eval-umaze-sparse-v1", 36.63, 141.4, 300),
        ("maze2d-eval-medium-v1", "maze2d-eval-medium-sparse-v1", 13.07, 204.93, 600),
        ("maze2d-eval-large-v1", "maze2d-eval-large-sparse-v1", 16.4, 302.22, 800),
        ("maze2d-open-dense-v0", "maze2d-open-dense", 11.17817, 27.166538620695782, 150),
        ("maze2d-umaze-dense-v0", "maze2d-umaze-dense", 23.249793, 81.78995240126592, 150),
        ("maze2d-medium-dense-v0", "maze2d-medium-dense", 19.477620, 96.03474232952358, 250),
        ("maze2d-large-dense-v0", "maze2d-large-dense", 27.388310, 215.09965671563742, 600),
        ("maze2d-umaze-dense-v1", "maze2d-umaze-dense-v1", 68.537689, 193.66285642381482, 300),
        ("maze2d-medium-dense-v1", "maze2d-medium-dense-v1", 44.264742, 297.4552547777125, 600),
        ("maze2d-large-dense-v1", "maze2d-large-dense-v1", 30.569041, 303.4857382709002, 800),
        (
            "maze2d-eval-umaze-dense-v1",
            "maze2d-eval-umaze-dense-v1",
            56.95455,
            178.21373133248397,
            300,
        ),
        (
            "maze2d-eval-medium-dense-v1",
            "maze2d-eval-medium-dense-v1",
            42.28578,
            235.5658957482388,
            600,
        ),
        (
            "maze2d-eval-large-dense-v1",
            "maze2d-eval-large-dense-v1",
            56.95455,
            326.09647655082637,
            800,
        ),
    ]
    for name, stem, lo, hi, steps in maze2d:
        add(name, f"maze2d/{stem}.hdf5", lo, hi, steps)
    return table


D4RL_DATASETS: Mapping[str, D4RLDatasetInfo] = MappingProxyType(_build_table())
"""Every D4RL dataset this package knows, by name (``hopper-medium-v2``)."""


def _canonical(name: str) -> str:
    name = name.strip()
    for prefix in ("d4rl/", "D4RL/", "d4rl:", "D4RL:"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def find_dataset_info(name: str) -> D4RLDatasetInfo | None:
    """The table entry for ``name`` (an optional ``d4rl/`` prefix is ignored), or None."""
    return D4RL_DATASETS.get(_canonical(name))


def dataset_info(name: str) -> D4RLDatasetInfo:
    """The table entry for ``name``.

    :raises SourceNotFoundError: unknown name (the message lists the closest known names).
    """
    info = find_dataset_info(name)
    if info is None:
        close = difflib.get_close_matches(_canonical(name), list(D4RL_DATASETS), n=3, cutoff=0.6)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else (
                "; known names look like hopper-medium-v2, antmaze-umaze-v2, door-human-v1, "
                "kitchen-mixed-v0, maze2d-large-v1"
            )
        )
        raise SourceNotFoundError(f"unknown D4RL dataset name {name!r}{hint}")
    return info


def stored_reference_scores(path: str | os.PathLike[str]) -> tuple[float, float] | None:
    """``(ref_min_score, ref_max_score)`` stored for a buffer file, or None when it has none
    (:func:`tianshou_offline.data.reference.stored_reference_scores`: computed by
    ``tianshou-offline reference-scores``, or stored by ``make-datasets``, ``convert d4rl``,
    ``convert minari``).

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a buffer file.
    """
    from tianshou_offline.data.reference import stored_reference_scores as stored

    return stored(path)


def reference_scores(dataset_name: str | os.PathLike[str]) -> tuple[float, float]:
    """``(ref_min_score, ref_max_score)`` of a D4RL dataset, in undiscounted episode return;
    for a name D4RL does not know, the scores stored in the buffer file at that path
    (:func:`stored_reference_scores`: e.g. a ``make-datasets`` family file).

    :raises SourceNotFoundError: unknown name (and no such file), or a file without
        reference scores.
    """
    if isinstance(dataset_name, str):
        info = find_dataset_info(dataset_name)
        if info is not None:
            return info.ref_min_score, info.ref_max_score
    path = Path(dataset_name)
    if path.is_file():
        stored = stored_reference_scores(path)
        if stored is None:
            raise SourceNotFoundError(
                f"{path}: stores no reference scores (ref_min_score/ref_max_score); expected "
                "a file written by make-datasets, convert d4rl or convert minari, or scores "
                "computed with `tianshou-offline reference-scores`"
            )
        return stored
    info = dataset_info(os.fspath(dataset_name))  # raises, naming the closest D4RL names
    return info.ref_min_score, info.ref_max_score


def normalized_score(dataset_name: str | os.PathLike[str], raw_return: float) -> float:
    """D4RL normalised score of an undiscounted episode return, on D4RL's 0–100 scale.

    ``100 · (raw_return - ref_min_score) / (ref_max_score - ref_min_score)``: 0 is the random
    policy, 100 the expert — the scale D4RL results are reported on (``d4rl.get_normalized_score``
    returns this ÷ 100).

    :param dataset_name: e.g. ``hopper-medium-v2`` (the reference depends only on the task),
        or the path of a buffer file that stores its reference scores (a ``make-datasets``
        family file: any environment); a D4RL name is looked up in D4RL's table first.
    :param raw_return: undiscounted return of one evaluation episode (or a mean of several).
    :raises SourceNotFoundError: unknown name, or a file without reference scores.
    """
    lo, hi = reference_scores(dataset_name)
    return 100.0 * (float(raw_return) - lo) / (hi - lo)

"""RL Unplugged Atari sources: the games, shard names and URLs, shard specifications,
downloads and the games' action sets."""

from __future__ import annotations

import difflib
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym

from tianshou_offline.data.atomic import atomic_output
from tianshou_offline.errors import (
    DatasetFormatError,
    SourceNotFoundError,
)
from tianshou_offline.progress import progress as progress_bar

log = logging.getLogger(__name__)

CONVERTER_NAME = "tianshou_offline.converters.rl_unplugged"
CONVERTER_VERSION = "1"
URL_PREFIX = "http://storage.googleapis.com/rl_unplugged/atari"
DEFAULT_CACHE_DIR = Path("~/.rl_unplugged/cache")
DEFAULT_OUTPUT_DIR = Path("~/.rl_unplugged/buffers")
TOTAL_NUM_SHARDS = 100

#: The 46 games of RL Unplugged Atari (the 9 tuning games and the test games).
GAMES: tuple[str, ...] = (
    "Alien", "Amidar", "Assault", "Asterix", "Atlantis", "BankHeist", "BattleZone",
    "BeamRider", "Boxing", "Breakout", "Carnival", "Centipede", "ChopperCommand",
    "CrazyClimber", "DemonAttack", "DoubleDunk", "Enduro", "FishingDerby", "Freeway",
    "Frostbite", "Gopher", "Gravitar", "Hero", "IceHockey", "Jamesbond", "Kangaroo", "Krull",
    "KungFuMaster", "MsPacman", "NameThisGame", "Phoenix", "Pong", "Pooyan", "Qbert",
    "Riverraid", "RoadRunner", "Robotank", "Seaquest", "SpaceInvaders", "StarGunner",
    "TimePilot", "UpNDown", "VideoPinball", "WizardOfWor", "YarsRevenge", "Zaxxon",
)  # fmt: skip

#: How the frames were made (Dopamine's Atari preprocessing, recorded in every file).
PREPROCESSING = {
    "frame_skip": 4,
    "max_pool_last_two_frames": True,
    "screen_size": 84,
    "grayscale": True,
    "frame_stack": 4,
    "sticky_actions_probability": 0.25,
    "action_set": "minimal",
    "max_episode_frames": 108000,
}


def shard_filename(run_id: int, shard_id: int, total_num_shards: int = TOTAL_NUM_SHARDS) -> str:
    """``run_{run_id}-{shard_id:05d}-of-{total:05d}``, the name of a shard in the bucket."""
    return f"run_{run_id}-{shard_id:05d}-of-{total_num_shards:05d}"


def shard_url(task: str, run_id: int, shard_id: int, url_prefix: str = URL_PREFIX) -> str:
    """Public URL of one shard."""
    return f"{url_prefix.rstrip('/')}/{task}/{shard_filename(run_id, shard_id)}"


def check_game(task: str) -> str:
    """Return ``task`` if it is an RL Unplugged Atari game, else raise with a suggestion."""
    if task in GAMES:
        return task
    close = difflib.get_close_matches(task, GAMES, n=3) or [
        g for g in GAMES if g.lower() == task.lower()
    ]
    hint = (
        f"; did you mean {', '.join(close)}?" if close else f"; expected one of {', '.join(GAMES)}"
    )
    raise SourceNotFoundError(f"unknown RL Unplugged Atari game {task!r}{hint}")


_SPEC = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_shard_spec(
    tokens: Sequence[str], total_num_shards: int = TOTAL_NUM_SHARDS
) -> tuple[list[int], list[Path]]:
    """Split ``--shard-id`` arguments into shard ids and explicit file paths.

    ``"1"``, ``"0-99"``, ``"1,3,7-9"`` are ids (sorted, de-duplicated); anything else is a path.

    :raises SourceNotFoundError: an id outside ``0..total_num_shards-1``.
    """
    ids: set[int] = set()
    paths: list[Path] = []
    for tok in tokens:
        if _SPEC.match(tok) and not Path(tok).exists():
            for part in tok.split(","):
                a, _, b = part.partition("-")
                lo, hi = int(a), int(b or a)
                if lo > hi:
                    raise SourceNotFoundError(f"shard range {part!r} is empty (start > end)")
                if hi >= total_num_shards:
                    raise SourceNotFoundError(
                        f"shard id {hi} does not exist; expected 0..{total_num_shards - 1}"
                    )
                ids.update(range(lo, hi + 1))
        else:
            paths.append(Path(tok))
    return sorted(ids), paths


# --------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------


def download_file(url: str, dest: Path, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically (``.part`` file renamed when complete).

    :raises SourceNotFoundError: HTTP 404 or the server cannot be reached.
    :raises DatasetFormatError: the download is shorter than the server announced.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    # another download of the same shard: same bytes
    with atomic_output(dest, overwrite=True, tag="part") as tmp:
        try:
            resp = urllib.request.urlopen(url, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise SourceNotFoundError(f"{url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError) as e:
            raise SourceNotFoundError(f"{url}: cannot download: {e}") from e
        with resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            got = 0
            with (
                open(tmp, "wb") as fh,
                progress_bar(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=f"download {dest.name}",
                    enabled=progress,
                ) as bar,
            ):
                while True:
                    block = resp.read(1 << 20)
                    if not block:
                        break
                    fh.write(block)
                    got += len(block)
                    bar.update(len(block))
        if total is not None and got != total:
            raise DatasetFormatError(
                f"{url}: download incomplete: got {got} of {total} bytes; try again"
            )
    return dest


def atari_num_actions(task: str) -> int | None:
    """Size of the game's minimal action set (what RL Unplugged's ``a_t`` indexes), via
    ``ale-py``; None when ale-py is not installed or does not know the game."""
    try:
        import ale_py
    except ImportError:
        return None
    try:
        gym.register_envs(ale_py)
        env = gym.make(f"ALE/{task}-v5")
        try:
            space = env.action_space
            return int(space.n) if isinstance(space, gym.spaces.Discrete) else None
        finally:
            env.close()
    except Exception as e:  # unknown game, missing ROM
        log.warning("ale-py cannot create ALE/%s-v5 (%s); action space not known", task, e)
        return None

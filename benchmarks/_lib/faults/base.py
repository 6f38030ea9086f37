"""What the fault harness asks of a writer (:class:`Writer`: prepare its sources, run into a
fresh directory, check what it left), how a run ended (:class:`Ran`: ``ok``, ``typed``,
``untyped``, from the CLI's exit and ``error:`` line or the API's exception), and the
checks and small sources the writers share (a buffer that loads, JSON, a torch file; a
D4RL-layout file, a buffer of episodes).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import traceback
from collections.abc import Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Ran:
    """What a writer's run ended with."""

    kind: str  # "ok", "typed", "untyped"
    message: str = ""
    committed: int = 0  # the recorder: episodes committed before the failure


_TEMPORARY = re.compile(r"/\.[^/\s]+\.\d+\.[0-9a-f]{8}(\.[\w-]+)?\.tmp\b")
"""A temporary's path (``tianshou_offline.data.atomic.temp_path``) in a message."""


def names_a_temporary(message: str) -> bool:
    """Whether an error message names a temporary, which the user never asked for, where it
    should name the output."""
    return _TEMPORARY.search(message) is not None


def run_cli(argv: list[str], output: Path) -> Ran:
    """``tianshou-offline argv`` in this process: exit 0 is ``ok``; exit 2 with one
    ``error:`` line that names ``output`` (no temporary) and says it cannot be written is
    ``typed``."""
    from tianshou_offline.cli import main

    err = io.StringIO()
    out = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(argv)
    except BaseException as e:  # a traceback would have been printed
        return Ran("untyped", f"{type(e).__name__}: {e}")
    stderr = err.getvalue()
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("WARNING ", "INFO "))]
    if code == 0:
        return Ran("ok")
    if (
        code == 2
        and len(lines) == 1
        and lines[0].startswith("error: ")
        and str(output) in lines[0]
        and "cannot write" in lines[0]
        and not names_a_temporary(lines[0])
    ):
        return Ran("typed", lines[0])
    return Ran("untyped", f"exit {code}: {' | '.join(lines)[-600:]}")


def run_api(fn: Callable[[], object]) -> Ran:
    from tianshou_offline.errors import OutputWriteError

    try:
        fn()
    except OutputWriteError as e:
        if names_a_temporary(str(e)):
            return Ran("untyped", f"names a temporary: {e}")
        return Ran("typed", str(e))
    except BaseException as e:
        tb = traceback.format_exc(limit=-3).replace("\n", " | ")
        return Ran("untyped", f"{type(e).__name__}: {e} :: {tb}"[-900:])
    return Ran("ok")


def buffer_ok(
    path: Path, transitions: int | None = None, load: Callable[[Path], Sized] | None = None
) -> bool:
    """Whether ``load`` (default :func:`~tianshou_offline.load_buffer`) reads the buffer file
    without an error, with ``transitions`` rows (any number when None)."""
    if load is None:
        from tianshou_offline import load_buffer

        load = load_buffer
    try:
        buf = load(path)
    except Exception:
        return False
    return transitions is None or len(buf) == transitions


def loads(load: Callable[[Path], object], path: Path) -> bool:
    """Whether ``load(path)`` reads the file without an error."""
    try:
        load(path)
    except Exception:
        return False
    return True


def json_ok(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


class Writer:
    """One writer: ``prepare`` (once, sources outside the fault's reach), ``run`` (into
    ``out``, a fresh directory), ``check`` (every output present is complete)."""

    name = ""

    def prepare(self, src: Path) -> None:
        self.src = src

    def before(self, out: Path) -> None:
        """What ``out`` holds before the run, written without a fault (default: nothing
        more than the earlier output every trial has)."""

    def run(self, out: Path) -> Ran:
        raise NotImplementedError

    def check(self, out: Path, ran: Ran) -> list[str]:
        """What is wrong with the outputs in ``out`` after ``ran`` (empty: nothing)."""
        raise NotImplementedError


def torch_ok(path: Path) -> bool:
    import torch

    try:
        torch.load(path, weights_only=False, map_location="cpu")
    except Exception:
        return False
    return True


def d4rl_source(path: Path, n: int, *, episode: int = 100) -> Path:
    """A D4RL-layout file of ``n`` random steps in episodes of ``episode`` steps (timeouts)."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, 11)).astype(np.float32)
        f["next_observations"] = rng.normal(size=(n, 11)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        f["rewards"] = rng.normal(size=n).astype(np.float32)
        f["terminals"] = np.zeros(n, bool)
        timeouts = np.zeros(n, bool)
        timeouts[episode - 1 :: episode] = True
        f["timeouts"] = timeouts
    return path


def episodes_buffer(path: Path, episodes: int, length: int, **kw: Any) -> Path:
    import gymnasium as gym
    import numpy as np

    from tianshou_offline.data.writer import BufferWriter

    rng = np.random.default_rng(1)
    with BufferWriter(
        path,
        observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
        **kw,
    ) as w:
        for _ in range(episodes):
            term = np.zeros(length, bool)
            term[-1] = True
            w.add_episode(
                obs=rng.uniform(-1, 1, (length, 4)).astype(np.float32),
                act=rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                rew=rng.normal(size=length).astype(np.float32),
                terminated=term,
                truncated=np.zeros(length, bool),
                obs_next=rng.uniform(-1, 1, (length, 4)).astype(np.float32),
            )
    return path


class OneFile(Writer):
    """A writer of one file ``out/<final>``: absent or complete after a failure."""

    final = ""

    def complete(self, path: Path) -> bool:
        raise NotImplementedError

    def check(self, out: Path, ran: Ran) -> list[str]:
        p = out / self.final
        if ran.kind == "ok":
            return [] if self.complete(p) else [f"{p.name}: published but incomplete"]
        if p.exists():
            return [f"{p.name}: present after a failed run"]
        return []

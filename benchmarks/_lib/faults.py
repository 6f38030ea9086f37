"""Fault harness of ``tests/test_faults.py`` and ``python -m benchmarks.faults``: every writer of the
package meets a write that fails, in a child process, and the outcome is checked there.

Faults (``FAULTS``):

- ``fsize``: ``RLIMIT_FSIZE`` set to a random size (writes past it fail with ``EFBIG``; Python
  ignores ``SIGXFSZ``);
- ``enospc`` / ``eio``: a C shim loaded with ``LD_PRELOAD`` (built here with the system's C
  compiler) fails every ``write``/``pwrite``/``writev``/``fallocate`` into the output
  directory from a random call on, with ``ENOSPC`` or ``EIO``;
- ``full``: the output directory is a small ``tmpfs`` (mounted in a user and mount namespace
  of the child: ``unshare --user --map-root-user --mount``, no root needed) filled up to a
  random number of free bytes.

Writers (``WRITERS``): ``convert d4rl`` (CLI), ``BufferWriter``, ``EpisodeRecorder``,
``make-datasets`` (CLI), ``export minari`` (CLI), ``repack`` (CLI), a grid cell and the grid
report (``run_cell`` + ``write_report``), a policy checkpoint (``save_policy_checkpoint``), a
Decision Transformer's checkpoint (the same, of a DT policy) and a training checkpoint written
over the previous one (``save_training_checkpoint``, the examples' ``last.pt`` with a
fine-tuning run's online buffer; the examples' other weights go through the same
``save_state``).

A trial runs one writer into a fresh directory that already holds an earlier output (bytes
known) and checks, in the child: the outcome (``ok``: the writer finished before the fault
bit; ``typed``: an ``OutputWriteError``, or for the CLI exit code 2 and one ``error:`` line
naming the output and saying it cannot be written; ``untyped``: anything else), that every
output present is complete (loads, and holds what it should), that no temporary is left and
that the earlier output is intact. The recorder's file must hold exactly the episodes it
committed before the failure.

Run as a module, it is the child: ``python -m benchmarks._lib.faults SPEC.json RESULTS.jsonl``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FAULTS = ("fsize", "enospc", "eio", "full")
SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static char dir[4096];
static size_t dirlen;
static long fail_at = -1; /* the watched write call from which on writes fail; -1: none */
static int fail_errno = ENOSPC;
static long calls;

void fault_arm(const char *d, long at, int err) {
    strncpy(dir, d, sizeof dir - 1);
    dirlen = strlen(dir);
    fail_at = at;
    fail_errno = err;
    __atomic_store_n(&calls, 0, __ATOMIC_SEQ_CST);
}
void fault_disarm(void) { fail_at = -1; dirlen = 0; }

/* a child process started by an armed one: armed by FAULT_DIR, FAULT_AT, FAULT_ERRNO */
__attribute__((constructor)) static void fault_from_env(void) {
    const char *d = getenv("FAULT_DIR"), *at = getenv("FAULT_AT"), *err = getenv("FAULT_ERRNO");
    if (d && at) fault_arm(d, atol(at), err ? atoi(err) : ENOSPC);
}
long fault_calls(void) { return __atomic_load_n(&calls, __ATOMIC_SEQ_CST); }

static int watched(int fd) {
    char link[64], target[4096];
    if (dirlen == 0) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = 0;
    return strncmp(target, dir, dirlen) == 0;
}

/* 1 (errno set) when this call must fail */
static int fault(int fd) {
    if (!watched(fd)) return 0;
    long c = __atomic_fetch_add(&calls, 1, __ATOMIC_SEQ_CST);
    if (fail_at >= 0 && c >= fail_at) { errno = fail_errno; return 1; }
    return 0;
}

#define REAL(name, ret, ...) \
    static ret (*real)(__VA_ARGS__); \
    if (!real) real = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, name)

ssize_t write(int fd, const void *buf, size_t n) {
    REAL("write", ssize_t, int, const void *, size_t);
    if (fault(fd)) return -1;
    return real(fd, buf, n);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL("pwrite", ssize_t, int, const void *, size_t, off_t);
    if (fault(fd)) return -1;
    return real(fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL("pwrite64", ssize_t, int, const void *, size_t, off_t);
    if (fault(fd)) return -1;
    return real(fd, buf, n, off);
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL("writev", ssize_t, int, const struct iovec *, int);
    if (fault(fd)) return -1;
    return real(fd, iov, cnt);
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    REAL("pwritev", ssize_t, int, const struct iovec *, int, off_t);
    if (fault(fd)) return -1;
    return real(fd, iov, cnt, off);
}
int fallocate(int fd, int mode, off_t off, off_t len) {
    REAL("fallocate", int, int, int, off_t, off_t);
    if (fault(fd)) return -1;
    return real(fd, mode, off, len);
}
int fallocate64(int fd, int mode, off_t off, off_t len) {
    REAL("fallocate64", int, int, int, off_t, off_t);
    if (fault(fd)) return -1;
    return real(fd, mode, off, len);
}
int posix_fallocate(int fd, off_t off, off_t len) {
    REAL("posix_fallocate", int, int, off_t, off_t);
    if (fault(fd)) return errno;
    return real(fd, off, len);
}
int posix_fallocate64(int fd, off_t off, off_t len) {
    REAL("posix_fallocate64", int, int, off_t, off_t);
    if (fault(fd)) return errno;
    return real(fd, off, len);
}
"""


def build_shim(directory: Path) -> Path | None:
    """Compile the write-failing shim into ``directory`` (None: no C compiler, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    src = directory / "faultshim.c"
    lib = directory / "faultshim.so"
    src.write_text(SHIM_C)
    res = subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"],
        capture_output=True,
        text=True,
    )
    return lib if res.returncode == 0 else None


def namespace_prefix() -> list[str] | None:
    """The command prefix that runs a child in a user and mount namespace where it may mount a
    tmpfs (None: this system does not allow it)."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("mount") is None:
        return None
    prefix = [unshare, "--user", "--map-root-user", "--mount"]
    with tempfile.TemporaryDirectory() as d:
        res = subprocess.run(
            [*prefix, "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d],
            capture_output=True,
        )
    return prefix if res.returncode == 0 else None


# --------------------------------------------------------------------------------------
# the writers (run in the child)
# --------------------------------------------------------------------------------------


@dataclass
class Ran:
    """What a writer's run ended with."""

    kind: str  # "ok", "typed", "untyped"
    message: str = ""
    committed: int = 0  # the recorder: episodes committed before the failure


def _cli(argv: list[str], output: Path) -> Ran:
    """``tianshou-offline argv`` in this process: exit 0 is ``ok``; exit 2 with one
    ``error:`` line that names ``output`` and says it cannot be written is ``typed``."""
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
    ):
        return Ran("typed", lines[0])
    return Ran("untyped", f"exit {code}: {' | '.join(lines)[-600:]}")


def _api(fn: Callable[[], object]) -> Ran:
    from tianshou_offline.errors import OutputWriteError

    try:
        fn()
    except OutputWriteError as e:
        return Ran("typed", str(e))
    except BaseException as e:
        tb = traceback.format_exc(limit=-3).replace("\n", " | ")
        return Ran("untyped", f"{type(e).__name__}: {e} :: {tb}"[-900:])
    return Ran("ok")


def _buffer_ok(path: Path, transitions: int | None = None) -> bool:
    from tianshou_offline import load_buffer

    try:
        buf = load_buffer(path)
    except Exception:
        return False
    return transitions is None or len(buf) == transitions


def _json_ok(path: Path) -> bool:
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


def _episodes_buffer(path: Path, episodes: int, length: int, **kw: Any) -> Path:
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


class _OneFile(Writer):
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


class ConvertD4RL(_OneFile):
    name = "convert d4rl"
    final = "d4rl.hdf5"
    n = 2000

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        d4rl_source(src / "d4rl-source.hdf5", self.n)

    def run(self, out: Path) -> Ran:
        argv = ["convert", "d4rl", str(self.src / "d4rl-source.hdf5"), "-o", str(out / self.final)]
        return _cli([*argv, "--no-progress"], out / self.final)

    def complete(self, path: Path) -> bool:
        return _buffer_ok(path, self.n)


class Writer_(_OneFile):
    name = "BufferWriter"
    final = "writer.hdf5"

    def run(self, out: Path) -> Ran:
        return _api(lambda: _episodes_buffer(out / self.final, 40, 50, chunk_bytes=4096))

    def complete(self, path: Path) -> bool:
        return _buffer_ok(path, 40 * 50)


class Recorder(Writer):
    name = "EpisodeRecorder"
    final = "recorded.hdf5"
    episodes = 8

    def run(self, out: Path) -> Ran:
        import gymnasium as gym

        from tianshou_offline.recording import EpisodeRecorder

        committed = 0

        def record() -> None:
            nonlocal committed
            env = EpisodeRecorder(gym.make("CartPole-v1"), out / self.final)
            try:
                env.action_space.seed(0)
                for ep in range(self.episodes):
                    env.reset(seed=ep)
                    done = False
                    while not done:
                        _, _, term, trunc, _ = env.step(env.action_space.sample())
                        done = term or trunc
                    committed = env.num_episodes
            finally:
                env.close()

        ran = _api(record)
        ran.committed = committed
        return ran

    def check(self, out: Path, ran: Ran) -> list[str]:
        from tianshou_offline import read_metadata

        p = out / self.final
        want = self.episodes if ran.kind == "ok" else ran.committed
        if not p.exists():
            return [] if want == 0 else [f"{p.name}: missing, {want} episodes were committed"]
        if not _buffer_ok(p):
            return [f"{p.name}: does not load"]
        got = read_metadata(p).num_episodes
        # the episode whose commit failed may be there, complete (the failure came after its
        # data, as a kill may): the file loads, and holds every committed episode
        if got == want or (ran.kind != "ok" and got == want + 1):
            return []
        return [f"{p.name}: {got} episodes, {want} were committed"]


class MakeDatasets(Writer):
    name = "make-datasets"

    @staticmethod
    def argv(family: Path) -> list[str]:
        """A tiny family of CartPole: DQN for 60 steps, two levels of 30 steps."""
        return [
            "make-datasets", "--env", "CartPole-v1", "-o", str(family), "--budget", "60",
            "--dataset-steps", "30", "--reference-episodes", "1", "--eval-episodes", "1",
            "--hidden-sizes", "8", "--batch-size", "16", "--start-steps", "20",
            "--checkpoint-every", "30", "--levels", "random,medium",
        ]  # fmt: skip

    def run(self, out: Path) -> Ran:
        return _cli(self.argv(out / "family"), out / "family")

    def check(self, out: Path, ran: Ran) -> list[str]:
        fam = out / "family"
        wrong: list[str] = []
        for p in sorted(fam.rglob("*")) if fam.is_dir() else []:
            if p.name.startswith(".") or p.is_dir():
                continue
            if p.suffix == ".hdf5" and not _buffer_ok(p):
                wrong.append(f"{p.relative_to(out)}: does not load")
            elif p.suffix == ".json" and not _json_ok(p):
                wrong.append(f"{p.relative_to(out)}: not JSON")
            elif p.suffix == ".pt" and not _torch_ok(p):
                wrong.append(f"{p.relative_to(out)}: torch.load fails")
        if ran.kind == "ok":
            for level in ("random", "medium"):
                if not (fam / f"{level}.hdf5").is_file():
                    wrong.append(f"{level}.hdf5 missing after a finished run")
        return wrong


def _torch_ok(path: Path) -> bool:
    import torch

    try:
        torch.load(path, weights_only=False, map_location="cpu")
    except Exception:
        return False
    return True


class ExportMinari(Writer):
    name = "export minari"

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        _episodes_buffer(src / "export-source.hdf5", 6, 20, overwrite=True)

    def run(self, out: Path) -> Ran:
        os.environ["MINARI_DATASETS_PATH"] = str(out)
        argv = ["export", "minari", str(self.src / "export-source.hdf5")]
        argv += ["--dataset-id", "faults/box-v0", "--no-progress"]
        return _cli(argv, out / "faults")

    def check(self, out: Path, ran: Ran) -> list[str]:
        target = out / "faults" / "box-v0"
        if ran.kind != "ok":
            return [f"{target}: present after a failed run"] if target.exists() else []
        try:
            import minari

            os.environ["MINARI_DATASETS_PATH"] = str(out)
            ds = minari.load_dataset("faults/box-v0")
            n = ds.total_episodes
        except Exception as e:
            return [f"{target}: does not load ({type(e).__name__}: {e})"]
        return [] if n == 6 else [f"{target}: {n} episodes, expected 6"]


class Repack(_OneFile):
    name = "repack"
    final = "repacked.hdf5"

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        _episodes_buffer(src / "repack-source.hdf5", 20, 50, compression="gzip", overwrite=True)

    def run(self, out: Path) -> Ran:
        argv = ["repack", str(self.src / "repack-source.hdf5"), str(out / self.final)]
        return _cli([*argv, "--no-progress"], out / self.final)

    def complete(self, path: Path) -> bool:
        return _buffer_ok(path, 20 * 50)


class Grid(Writer):
    """A grid cell (checkpoints, policy, result) and the grid's report."""

    name = "grid"

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        import gymnasium as gym
        import numpy as np

        from tianshou_offline.data.writer import BufferWriter

        rng = np.random.default_rng(2)
        env = gym.make("Pendulum-v1")
        with BufferWriter(
            src / "pendulum.hdf5",
            observation_space=env.observation_space,
            action_space=env.action_space,
            env_id="Pendulum-v1",
            overwrite=True,
        ) as w:
            for _ in range(2):
                n = 50
                trunc = np.zeros(n, bool)
                trunc[-1] = True
                w.add_episode(
                    obs=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                    act=rng.uniform(-2, 2, (n, 1)).astype(np.float32),
                    rew=rng.normal(size=n).astype(np.float32),
                    terminated=np.zeros(n, bool),
                    truncated=trunc,
                    obs_next=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                )

    def cell(self) -> Any:
        from tianshou_offline.scale.grid import Budget, Cell

        budget = Budget(epochs=2, steps_per_epoch=3, batch_size=8, test_episodes=1,
                        eval_episodes=1)  # fmt: skip
        return Cell(
            algorithm="il",
            dataset=str(self.src / "pendulum.hdf5"),
            seed=0,
            overrides={"hidden_sizes": [8, 8]},
            budget=budget,
        )

    def run(self, out: Path) -> Ran:
        from tianshou_offline.scale.grid import run_cell, write_report

        def grid() -> None:
            result = run_cell(self.cell(), out)
            write_report([result], out)

        return _api(grid)

    def check(self, out: Path, ran: Ran) -> list[str]:
        from tianshou_offline.scale.grid import cell_dir

        wrong: list[str] = []
        d = cell_dir(self.cell(), out)
        for p in sorted(out.rglob("*")):
            if p.name.startswith(".") or p.is_dir() or "events.out" in p.name:
                continue
            if p.suffix in (".json",) and not _json_ok(p):
                wrong.append(f"{p.relative_to(out)}: not JSON")
            elif p.suffix == ".pt" and not _torch_ok(p):
                wrong.append(f"{p.relative_to(out)}: torch.load fails")
            elif p.suffix in (".md", ".csv") and not p.read_text().strip():
                wrong.append(f"{p.relative_to(out)}: empty")
        if ran.kind == "ok" and not (d / "result.json").is_file():
            wrong.append("result.json missing after a finished run")
        return wrong


class Checkpoint(_OneFile):
    name = "checkpoint"
    final = "policy.pt"

    def run(self, out: Path) -> Ran:
        import gymnasium as gym
        from tianshou.utils.net.common import Net

        from tianshou_offline.recording.policies import save_policy_checkpoint

        net = Net(state_shape=(4,), action_shape=2, hidden_sizes=[256, 256])
        return _api(
            lambda: save_policy_checkpoint(
                out / self.final,
                net,
                state_shape=(4,),
                action_space=gym.spaces.Discrete(2),
                hidden_sizes=[256, 256],
            )
        )

    def complete(self, path: Path) -> bool:
        from tianshou_offline.recording.policies import read_policy_state_dict

        try:
            read_policy_state_dict(path)
        except Exception:
            return False
        return True


class DTCheckpoint(Checkpoint):
    """A Decision Transformer's replayable checkpoint (network, target return, context,
    observation statistics)."""

    name = "DT checkpoint"

    def run(self, out: Path) -> Ran:
        import gymnasium as gym
        import numpy as np

        import tianshou_offline.algorithms as A
        from tianshou_offline.recording.policies import save_policy_checkpoint

        env = gym.make("Pendulum-v1")
        model = A.DecisionTransformerNet(
            state_encoder=A.state_encoder(env.observation_space, 64), act_dim=1,
            discrete=False, hidden=64, layers=2, heads=2, context=8, max_timestep=200,
        )  # fmt: skip
        policy = A.ContinuousDTPolicy(
            model=model, action_space=env.action_space, observation_space=env.observation_space,
            target_return=-200.0, rtg_scale=100.0, normalize_obs=True,
        )  # fmt: skip
        policy.obs_normalizer.fit(np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32))
        return _api(lambda: save_policy_checkpoint(out / self.final, policy))

    def complete(self, path: Path) -> bool:
        from tianshou_offline.recording.dt_policies import load_dt_policy

        try:
            load_dt_policy(path)
        except Exception:
            return False
        return True


class TrainingCheckpoint(Writer):
    """A training run's ``last.pt`` (``tianshou_offline.training``: an algorithm with its
    optimizer, the generators, the counters and a fine-tuning run's online buffer) written
    over the previous epoch's: after a failure the previous checkpoint is there, unchanged."""

    name = "training checkpoint"
    final = "last.pt"

    def save(self, path: Path, epoch: int) -> None:
        from tianshou_offline.training import save_training_checkpoint

        algorithm, online = self.state(epoch)
        save_training_checkpoint(
            path, algorithm, epoch=epoch, env_step=100 * epoch, gradient_step=10 * epoch,
            extra={"online_buffer": online},
        )  # fmt: skip

    @functools.cache  # noqa: B019  (two states per writer, made once)
    def state(self, epoch: int) -> tuple[Any, dict[str, Any]]:
        """An algorithm-like module (a network and its Adam state) and an online buffer's
        state (300 rows), different for each ``epoch``."""
        import numpy as np
        import torch
        from tianshou.data import Batch, ReplayBuffer

        from tianshou_offline.training import replay_buffer_state

        torch.manual_seed(epoch)
        net = torch.nn.Sequential(torch.nn.Linear(4, 256), torch.nn.Linear(256, 256))
        optim = torch.optim.Adam(net.parameters())
        net(torch.ones(2, 4)).sum().backward()
        optim.step()

        class Algorithm(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def state_dict(self, *args: Any, **kwargs: Any) -> Any:
                return {"net": net.state_dict(), "optim": optim.state_dict()}

        online = ReplayBuffer(500)
        rng = np.random.default_rng(epoch)
        for i in range(300):
            online.add(Batch(obs=rng.normal(size=(1, 4)), act=rng.normal(size=(1, 2)),
                             rew=[1.0], terminated=[i % 50 == 49], truncated=[False],
                             obs_next=rng.normal(size=(1, 4)), info=[{}]))  # fmt: skip
        return Algorithm(), replay_buffer_state(online)

    def before(self, out: Path) -> None:
        self.save(out / self.final, 1)
        self.previous = hashlib.sha256((out / self.final).read_bytes()).hexdigest()

    def run(self, out: Path) -> Ran:
        return _api(lambda: self.save(out / self.final, 2))

    def check(self, out: Path, ran: Ran) -> list[str]:
        from tianshou_offline.training import read_training_checkpoint

        p = out / self.final
        if not p.is_file():
            return [f"{p.name}: the previous checkpoint is gone"]
        if ran.kind != "ok":
            same = hashlib.sha256(p.read_bytes()).hexdigest() == self.previous
            return [] if same else [f"{p.name}: not the previous checkpoint after a failure"]
        state = read_training_checkpoint(p)
        if state is None or state["epoch"] != 2 or "online_buffer" not in state["extra"]:
            return [f"{p.name}: published but incomplete"]
        return []


_ALL: tuple[type[Writer], ...] = (ConvertD4RL, Writer_, Recorder, MakeDatasets, ExportMinari,
                                  Repack, Grid, Checkpoint, DTCheckpoint, TrainingCheckpoint)  # fmt: skip
WRITERS: dict[str, type[Writer]] = {w.name: w for w in _ALL}


# --------------------------------------------------------------------------------------
# trials (in the child)
# --------------------------------------------------------------------------------------

EARLIER = b"an earlier output: its bytes must survive any failure beside it\n" * 64


def _temps(out: Path) -> list[str]:
    """Temporaries left anywhere under ``out`` (``.NAME.PID.TOKEN[.TAG].tmp``)."""
    from tianshou_offline.data.atomic import temp_owner

    found = []
    for p in out.rglob(".*"):
        if p.name.endswith(".tmp") and temp_owner(p.name, p.name.split(".")[1]) is not None:
            found.append(str(p.relative_to(out)))
    return found


def _files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and p.name != "earlier.bin"]


@contextlib.contextmanager
def _fault(kind: str, value: int, out: Path, shim: Any) -> Iterator[None]:
    """Arm the fault for the body: ``fsize`` (bytes), ``enospc``/``eio`` (the watched write
    call that fails first), ``full`` (free bytes left on the tmpfs holding ``out``);
    ``count``/``none``: no fault (``count`` counts the watched write calls)."""
    if kind == "fsize":
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (value, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    elif kind in ("enospc", "eio", "count"):
        err = errno.EIO if kind == "eio" else errno.ENOSPC
        at = -1 if kind == "count" else value
        shim.fault_arm(str(out).encode(), at, err)
        # a process this one starts is armed the same way (LD_PRELOAD is inherited)
        os.environ.update(FAULT_DIR=str(out), FAULT_AT=str(at), FAULT_ERRNO=str(err))
        try:
            yield
        finally:
            shim.fault_disarm()
            for key in ("FAULT_DIR", "FAULT_AT", "FAULT_ERRNO"):
                os.environ.pop(key, None)
    elif kind == "full":
        st = os.statvfs(out)
        filler = out.parent / "filler"
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            left = max(0, st.f_bavail * st.f_frsize - value)
            block = b"\0" * (1 << 20)
            while left > 0:
                left -= f.write(block[: min(left, len(block))])
        try:
            yield
        finally:
            filler.unlink()
    else:
        yield


@dataclass
class Need:
    """What a writer's finished run writes: bytes in all, its largest file, write calls."""

    total: int
    largest: int
    calls: int

    def value(self, fault: str, frac: float) -> int:
        """The fault's setting at ``frac`` (0: at once, 1: just as the run would finish)."""
        if fault == "fsize":
            return int(frac * self.largest)
        if fault in ("enospc", "eio"):
            return int(frac * self.calls)
        return int(frac * self.total)


def run_trials(spec: dict[str, Any], results: Path) -> None:
    """The child: for each trial of ``spec["trials"]`` (``[writer, fault, frac]``) run the
    writer once without a fault (the first time: what it needs), then under the fault at
    ``frac`` of what it needs, and append the outcome to ``results`` (one JSON line)."""
    logging_off()
    src = Path(spec["src"])
    src.mkdir(parents=True, exist_ok=True)
    root = Path(spec["root"])
    shutil.rmtree(root, ignore_errors=True)  # an earlier child's, which crashed
    root.mkdir(parents=True)
    full_root = root / "tmpfs"
    if spec.get("mount"):
        full_root.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={spec['mount']}", "tmpfs", str(full_root)],
            check=True,
        )
    shim = ctypes.CDLL(None) if spec.get("shim") else None
    if shim is not None:
        shim.fault_arm.argtypes = [ctypes.c_char_p, ctypes.c_long, ctypes.c_int]
        shim.fault_calls.restype = ctypes.c_long
    writers: dict[str, Writer] = {}
    needs: dict[str, Need] = {}
    first = int(spec.get("first", 0))
    for i, (name, fault, frac) in enumerate(spec["trials"], start=first):
        if name not in writers:
            writers[name] = WRITERS[name]()
            writers[name].prepare(src)
            base = root / f"base-{len(writers)}"
            base.mkdir()
            writers[name].before(base)
            with _fault("count" if shim is not None else "none", 0, base, shim):
                ran = writers[name].run(base)
            assert ran.kind == "ok", f"{name} fails without a fault: {ran.message}"
            files = _files(base)
            needs[name] = Need(
                total=sum(p.stat().st_size for p in files),
                largest=max(p.stat().st_size for p in files),
                calls=int(shim.fault_calls()) if shim is not None else 0,
            )
            shutil.rmtree(base)
        w = writers[name]
        value = needs[name].value(fault, float(frac))
        area = (full_root if fault == "full" else root) / f"t{i}"
        out = area / "out"
        out.mkdir(parents=True)
        (out / "earlier.bin").write_bytes(EARLIER)
        digest = hashlib.sha256(EARLIER).hexdigest()
        w.before(out)
        t0 = time.perf_counter()
        with _fault(fault, value, out, shim):
            ran = w.run(out)
        wrong = w.check(out, ran)
        earlier = out / "earlier.bin"
        intact = earlier.is_file() and hashlib.sha256(earlier.read_bytes()).hexdigest() == digest
        row = {
            "trial": i,
            "writer": name,
            "fault": fault,
            "frac": float(frac),
            "value": value,
            "outcome": ran.kind,
            "message": ran.message[:600],
            "wrong": wrong,
            "temps": _temps(out),
            "earlier_intact": intact,
            "seconds": time.perf_counter() - t0,
        }
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        shutil.rmtree(area, ignore_errors=True)


def logging_off() -> None:
    import logging

    logging.disable(logging.WARNING)
    import torch

    torch.set_num_threads(1)


# --------------------------------------------------------------------------------------
# the parent: build, launch, read back
# --------------------------------------------------------------------------------------


@dataclass
class Launch:
    """How children run here: the command prefix (a user and mount namespace for ``full``),
    the environment (the shim preloaded for ``enospc``/``eio``) and the faults they can
    inject, with why the others cannot be."""

    prefix: list[str]
    env: dict[str, str]
    faults: list[str]
    skipped: dict[str, str]


def launcher(work: Path, faults: tuple[str, ...] = FAULTS) -> Launch:
    """How to run children that inject ``faults`` on this system."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "PYTHONFAULTHANDLER": "1"}  # fmt: skip
    prefix: list[str] = []
    skipped: dict[str, str] = {}
    if {"enospc", "eio"} & set(faults):
        lib = build_shim(work)
        if lib is None:
            skipped["enospc"] = skipped["eio"] = "no C compiler (cc) to build the LD_PRELOAD shim"
        else:
            env["LD_PRELOAD"] = str(lib)
    if "full" in faults:
        ns = namespace_prefix()
        if ns is None:
            skipped["full"] = (
                "cannot mount a tmpfs: no unprivileged user namespaces, or no unshare/mount"
            )
        else:
            prefix = ns
    return Launch(prefix, env, [f for f in faults if f not in skipped], skipped)


def run_child(
    launch: Launch, trials: list[tuple[str, str, float]], work: Path, *, first: int = 0,
    timeout: float = 600,
) -> tuple[list[dict[str, Any]], int, str]:  # fmt: skip
    """Run ``trials`` in one child; returns its rows (a trial it died in: outcome ``crash``,
    the rest not run), its exit status and its stderr."""
    work.mkdir(parents=True, exist_ok=True)
    results = work / "results.jsonl"
    results.unlink(missing_ok=True)
    spec = {
        "src": str(work / "src"),
        "root": str(work / "area"),
        "mount": "16m" if "full" in launch.faults else None,
        "shim": "LD_PRELOAD" in launch.env,
        "first": first,
        "trials": trials,
    }
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(spec))
    res = subprocess.run(
        [
            *launch.prefix,
            sys.executable,
            "-m",
            "benchmarks._lib.faults",
            str(spec_file),
            str(results),
        ],
        capture_output=True,
        text=True,
        env=launch.env,
        cwd=REPO,
        timeout=timeout,
    )
    rows = [json.loads(ln) for ln in results.read_text().splitlines()] if results.exists() else []
    if len(rows) < len(trials):
        name, fault, frac = trials[len(rows)]
        tail = "\n".join(ln for ln in res.stderr.splitlines() if not ln.startswith("Extension"))
        rows.append({"trial": first + len(rows), "writer": name, "fault": fault,
                     "frac": frac, "value": -1, "outcome": "crash",
                     "message": f"exit {res.returncode}: {tail[-1500:]}", "wrong": [],
                     "temps": [], "earlier_intact": False, "seconds": 0.0})  # fmt: skip
    return rows, res.returncode, res.stderr


def sweep(
    writers: list[str], faults: tuple[str, ...], fracs: Callable[[str, str], list[float]],
    work: Path, *, timeout: float = 600,
) -> tuple[dict[str, str], list[dict[str, Any]]]:  # fmt: skip
    """Every writer under every fault this system can inject, once at each of
    ``fracs(writer, fault)`` (fractions of what the writer needs: 0 fails at once, 1 just as
    it would finish); a child that crashed is replaced, the rest of its trials run in the
    next one.

    :returns: the faults skipped here with why, and one row per trial."""
    launch = launcher(work, faults)
    todo = [(w, f, x) for f in launch.faults for w in writers for x in fracs(w, f)]
    rows: list[dict[str, Any]] = []
    while todo:
        got, status, err = run_child(launch, todo, work, first=len(rows), timeout=timeout)
        if len(got) == len(todo) and status != 0 and got[-1]["outcome"] != "crash":
            # every trial reported, then the child died (at exit): the last one is blamed
            got[-1] = {**got[-1], "outcome": "crash", "message": f"exit {status}: {err[-1500:]}"}
        rows.extend(got)
        todo = todo[len(got) :]
    return launch.skipped, rows


if __name__ == "__main__":
    run_trials(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))

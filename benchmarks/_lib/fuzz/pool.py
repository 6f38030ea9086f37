"""The pool of worker processes that runs jobs under a time and a memory limit (:class:`Pool`), and
the jobs (:func:`jobs_for`, :func:`seed_jobs`)."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import random
import resource
import shutil
import signal
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._lib.fuzz.entries import OPTIONS, _StderrHandler, _Timeout, run_entry
from benchmarks._lib.fuzz.mutants import _byte_mutant, make_mutant
from benchmarks._lib.fuzz.seeds import SEED_ENTRY_POINTS, Seed


@dataclass
class Job:
    entry: str
    path: str
    mutant: int
    seed: str
    description: str
    variant: int = 0
    time_limit: float | None = None
    """seconds for this run (None: the pool's limit)."""


@dataclass
class Result:
    job: Job
    outcome: str
    detail: str
    seconds: float
    peak_mb: float
    retiring: bool = False
    """the worker ends after this job (its memory crept up): the pool starts a fresh one
    instead of sending it the next job (which it would report as a crash)."""


_ALLOCATION_FAILED = (
    "memory allocation failed", "out of memory", "cannot allocate memory",
    "can't allocate memory", "unable to allocate memory",
)  # fmt: skip
"""How libhdf5 (and the OS) say that malloc failed: a typed error, but a blow-up."""


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _worker(conn: mpc.Connection, time_limit: float, mem_limit: int) -> None:
    """Run jobs from ``conn`` until it closes; one result per job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    base_vm = _status("VmSize")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = base_vm + mem_limit
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    logging.getLogger().handlers[:] = [_StderrHandler()]
    logging.getLogger().setLevel(logging.WARNING)
    warnings.simplefilter("ignore")

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Timeout

    signal.signal(signal.SIGALRM, on_alarm)
    while True:
        try:
            job: Job = conn.recv()
        except EOFError:
            return
        base_rss = _status("VmRSS")
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak resident size (VmHWM)
        workdir = Path(tempfile.mkdtemp(prefix="fuzz-run-"))
        limit_s = job.time_limit or time_limit
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, limit_s)
        try:
            outcome, detail = run_entry(job.entry, Path(job.path), workdir, job.variant)
        except _Timeout:
            outcome, detail = "timeout", f"over {limit_s:g} s"
        except MemoryError as e:
            outcome, detail = "memory", f"{type(e).__name__}: {str(e)[:200]}"
        except BaseException as e:
            tb = traceback.extract_tb(e.__traceback__)
            where = "; ".join(f"{Path(fr.filename).name}:{fr.lineno} {fr.name}" for fr in tb[-3:])
            outcome, detail = "untyped", f"{type(e).__name__}: {str(e)[:200]} [{where}]"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        seconds = time.perf_counter() - t0
        if outcome == "typed" and any(m in detail.lower() for m in _ALLOCATION_FAILED):
            outcome, detail = _probe_refusal(job, workdir, limit, mem_limit, detail, limit_s)
        peak = max(0, _status("VmHWM") - base_rss) / 2**20
        shutil.rmtree(workdir, ignore_errors=True)
        retiring = _status("VmSize") > base_vm + 512 * 2**20  # memory crept up
        conn.send(Result(job, outcome, detail, seconds, peak, retiring))
        if retiring:
            return  # the pool starts a fresh worker


GiB = 1 << 30
PROBE_STEPS_GIB = (3, 16, 128)
"""Address space granted beyond the run's limit when a typed error reports a failed
allocation, one rerun each, then none at all (under a memory cgroup, see
:func:`_probe_refusal`)."""


def _memory_cgroup(cap: int) -> Path | None:
    """A new memory cgroup below this process's own with a resident-memory cap of ``cap``
    bytes (cgroup v1 ``memory.limit_in_bytes`` or v2 ``memory.max``), or None where none can
    be made (not root, no memory controller)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if "memory" in controllers.split(","):
            base, knob = Path("/sys/fs/cgroup/memory") / rel.lstrip("/"), "memory.limit_in_bytes"
        elif controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            base, knob = Path("/sys/fs/cgroup") / rel.lstrip("/"), "memory.max"
        else:
            continue
        group = base / f"fuzz-probe-{os.getpid()}"
        try:
            group.mkdir(exist_ok=True)
            (group / knob).write_text(str(cap))
            return group
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
    return None


def _probe_once(
    job: Job, workdir: Path, limit: int | None, group: Path | None, time_limit: float = 10.0
) -> tuple[str, str]:
    """Rerun ``job`` in a forked child with an address-space limit of ``limit`` bytes (None:
    none, only inside ``group``) and a timer of ``time_limit`` seconds: its outcome and
    detail; ``("killed", …)`` when the cgroup's cap (or anything else) killed it."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read)
            if group is not None:
                (group / "cgroup.procs").write_text(str(os.getpid()))
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            soft = (
                hard
                if limit is None
                else (limit if hard == resource.RLIM_INFINITY else min(hard, limit))
            )
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
            signal.setitimer(signal.ITIMER_REAL, time_limit)
            try:
                outcome, detail = run_entry(job.entry, Path(job.path), workdir, job.variant)
            except BaseException as e:
                outcome, detail = "untyped", f"{type(e).__name__}: {e}"
            os.write(write, json.dumps([outcome, detail[:500]]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return (
            "killed",
            f"the rerun died ({'signal ' + str(os.WTERMSIG(status)) if os.WIFSIGNALED(status) else 'exit ' + str(os.WEXITSTATUS(status))})",
        )
    outcome, detail = json.loads(data)
    return str(outcome), str(detail)


def _probe_refusal(
    job: Job, workdir: Path, limit: int, mem_limit: int, detail: str, time_limit: float = 10.0
) -> tuple[str, str]:
    """A typed error that reports a failed allocation: rerun it with more address space
    (:data:`PROBE_STEPS_GIB` beyond ``limit``), then with no address-space limit at all —
    each rerun in a forked child inside a memory cgroup whose resident cap is ``mem_limit``
    plus the worker's size, so a request that is granted and used is stopped there. The
    request's size lies between the last refused and the first granted step. ``typed``
    (marked :data:`ALLOCATION_REFUSED`, with the size and whether it was refused without any
    limit) when every rerun fails the same way: the request was refused before any memory was
    used; ``memory`` when a rerun gets further, grows or is killed. Without a cgroup (not
    root) the unlimited rerun is skipped and the detail says so."""
    group = _memory_cgroup(_status("VmRSS") + mem_limit)
    refused_gib = 0
    try:
        for extra in (*PROBE_STEPS_GIB, None):
            if extra is None and group is None:
                return "typed", (
                    f"{ALLOCATION_REFUSED} requested > {refused_gib} GiB beyond the limit; not "
                    f"rerun without a limit (no memory cgroup) {detail}"
                )
            outcome, again = _probe_once(
                job, workdir, None if extra is None else limit + extra * GiB, group, time_limit
            )
            if outcome != "typed" or again != detail:
                granted = "no limit" if extra is None else f"{extra} GiB more"
                return "memory", (
                    f"{detail} (with {granted}: {outcome}: {again[:200]}; refused up to "
                    f"{refused_gib} GiB more)"
                )
            if extra is not None:
                refused_gib = extra
        return "typed", (
            f"{ALLOCATION_REFUSED} requested > {refused_gib} GiB beyond the limit; refused "
            f"without an address-space limit too {detail}"
        )
    finally:
        if group is not None:
            with contextlib.suppress(OSError):
                group.rmdir()


ALLOCATION_REFUSED = "[allocation refused]"


class Pool:
    """Worker processes (forked from this one, after its imports) that run :class:`Job` s.

    Each job runs under a soft time limit (a timer in the worker), a hard one (the pool kills
    a worker that does not answer within ``time_limit + grace_s``) and an address-space limit of
    the worker's size at start plus ``mem_limit`` bytes (``RLIMIT_AS``).
    """

    grace_s = 5.0
    """How long past the time limit the pool waits for a worker (stuck in C code, where the
    worker's own timer cannot interrupt it) before it kills it."""

    def __init__(self, workers: int, time_limit: float, mem_limit: int) -> None:
        self.workers = workers
        self.time_limit = time_limit
        self.mem_limit = mem_limit
        self._ctx = mp.get_context("fork")

    def _start(self) -> tuple[Any, mpc.Connection]:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker, args=(child, self.time_limit, self.mem_limit), daemon=True
        )
        proc.start()
        child.close()
        return proc, parent

    def run(self, jobs: Iterator[tuple[Job, Callable[[], None] | None]]) -> Iterator[Result]:
        """Run jobs, yielding results as they come; a job's callback runs once it is done."""
        slots: list[dict[str, Any]] = []
        for _ in range(self.workers):
            proc, conn = self._start()
            slots.append({"proc": proc, "conn": conn, "job": None, "t0": 0.0, "done": None})
        pending = iter(jobs)
        exhausted = False
        try:
            while True:
                for s in slots:
                    if s["job"] is None and not exhausted:
                        nxt = next(pending, None)
                        if nxt is None:
                            exhausted = True
                            break
                        s["job"], s["done"] = nxt
                        s["t0"] = time.perf_counter()
                        s["conn"].send(s["job"])
                busy = [s for s in slots if s["job"] is not None]
                if not busy:
                    return
                ready = mpc.wait([s["conn"] for s in busy], timeout=1.0)
                now = time.perf_counter()
                for s in busy:
                    res: Result | None = None
                    restart = False
                    if s["conn"] in ready:
                        try:
                            res = s["conn"].recv()
                        except (EOFError, OSError):
                            s["proc"].join(5)
                            code = s["proc"].exitcode
                            outcome = (
                                "memory" if code in (-signal.SIGKILL, -signal.SIGABRT) else "crash"
                            )
                            res = Result(s["job"], outcome, f"worker died (exit {code})",
                                         now - s["t0"], 0.0)  # fmt: skip
                            restart = True
                        if res is not None and (res.retiring or not s["proc"].is_alive()):
                            restart = True
                    elif now - s["t0"] > (s["job"].time_limit or self.time_limit) + self.grace_s:
                        s["proc"].kill()
                        s["proc"].join()
                        res = Result(s["job"], "timeout", "killed (no answer)", now - s["t0"], 0.0)
                        restart = True
                    if res is None:
                        continue
                    if restart or not s["proc"].is_alive():
                        s["conn"].close()
                        s["proc"].join(5)
                        s["proc"], s["conn"] = self._start()
                    if s["done"] is not None:
                        s["done"]()
                    s["job"], s["done"] = None, None
                    yield res
        finally:
            for s in slots:
                s["conn"].close()
                s["proc"].join(2)
                if s["proc"].is_alive():
                    s["proc"].kill()


def jobs_for(
    seeds: Sequence[Seed],
    n_mutants: int,
    seed: int,
    workdir: Path,
    *,
    entries_per_mutant: int | None = None,
    first: int = 0,
    time_limits: Mapping[tuple[str, str, int], float] | None = None,
    only: Collection[int] | None = None,
    entries: Collection[str] | None = None,
) -> Iterator[tuple[Job, Callable[[], None] | None]]:
    """Mutants of the seeds in turn, each with a job per entry point that reads it (or, with
    ``entries_per_mutant``, that many of them drawn at random); the mutant is deleted once its
    last job is done. Deterministic for a given ``seed``; mutants are numbered from
    ``first``. ``time_limits``: seconds for the runs of ``(seed kind, entry point, option
    set)`` (:func:`relative_time_limits`; others get the pool's limit). ``only`` (mutant
    numbers) and ``entries`` (entry points) replay part of a run: the jobs left are those
    of the whole run, mutations and option sets alike."""
    rng = random.Random(seed)
    for m in range(first, first + n_mutants):
        s = seeds[(m - first) % len(seeds)]
        mrng = random.Random(rng.getrandbits(64))
        if only is not None and m not in only:
            continue
        if entries is not None and not set(SEED_ENTRY_POINTS[s.name]) & set(entries):
            continue  # none of its jobs would be left
        path = workdir / f"m{m}-{s.path.name}"
        if s.name == "tfrecord":
            path = workdir / f"Pong-{m}" / s.path.name
            path.parent.mkdir()
        try:
            desc = make_mutant(s, path, mrng)
        except Exception as e:  # a mutation that cannot apply to what earlier ones left
            desc = f"(mutation failed: {type(e).__name__}; bytes instead) " + _byte_mutant(
                s, path, mrng
            )
        names = SEED_ENTRY_POINTS[s.name]
        if entries_per_mutant is not None and entries_per_mutant < len(names):
            names = tuple(mrng.sample(names, entries_per_mutant))
        runs = [(entry, mrng.randrange(1 << 16)) for entry in names]
        runs = [(e, v) for e, v in runs if entries is None or e in entries]
        left = [len(runs)]

        def done(path: Path = path, left: list[int] = left) -> None:
            left[0] -= 1
            if left[0] == 0:
                target = path.parent if path.parent.name.startswith("Pong-") else path
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)

        if not runs:
            left[0] = 1
            done()
        for entry, v in runs:
            limit = (time_limits or {}).get((s.name, entry, v % len(OPTIONS[entry])))
            yield Job(entry, str(path), m, s.name, desc, variant=v, time_limit=limit), done


def seed_jobs(
    seeds: Sequence[Seed],
    variants: int | None = None,
    time_limit: float | None = None,
    entries: Collection[str] | None = None,
) -> Iterator[tuple[Job, Callable[[], None] | None]]:
    """Every entry point (of ``entries``, default all) on every unmutated seed, in every
    option set (with ``variants``, that many sets each, rotating over the seeds so that
    together they run every set; those of :data:`SEED_REFUSES` are left out), each under
    ``time_limit`` seconds (None: the pool's): all must be ``ok``. A job's ``variant`` is
    its option set's index."""
    for i, s in enumerate(seeds):
        for e in SEED_ENTRY_POINTS[s.name]:
            if entries is not None and e not in entries:
                continue
            n = len(OPTIONS[e])
            sets = (
                range(n) if variants is None else [(i * variants + k) % n for k in range(variants)]
            )
            for v in dict.fromkeys(sets):
                opts = OPTIONS[e][v]
                if not set(opts) & SEED_REFUSES.get((s.name, e), set()):
                    yield (
                        Job(e, str(s.path), -1, s.name, "seed", variant=v, time_limit=time_limit),
                        None,
                    )


def relative_time_limits(
    results: Iterable[Result], base: float, factor: float
) -> dict[tuple[str, str, int], float]:
    """The time limit of the mutants' runs of each ``(seed kind, entry point, option set)``
    from the unmutated seed's run of it (``results`` of :func:`seed_jobs`): ``factor`` times
    its time where that is longer than ``base`` (a 250 MB conversion takes longer than a
    limit made for files of kilobytes; a mutant that takes ``factor`` times as long as the
    valid file is a blow-up)."""
    limits: dict[tuple[str, str, int], float] = {}
    for r in results:
        key = (r.job.seed, r.job.entry, r.job.variant % len(OPTIONS[r.job.entry]))
        if factor * r.seconds > max(base, limits.get(key, 0.0)):
            limits[key] = round(factor * r.seconds, 1)
    return limits


SEED_REFUSES: dict[tuple[str, str], set[str]] = {
    (kind, "load_buffer"): {"stack_num"}
    for kind in ("framestack", "framestack_contiguous", "large_frames")
}
"""Options a valid seed is refused with (a typed error, not ``ok``): a frame-stacked file
loaded with another ``stack_num`` than it was written with."""

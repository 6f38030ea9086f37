"""Interleaved timing of training steps across processes (one per library), standard library only.

The speed benchmark (``benchmarks/train_speed.py``) compares one gradient
step of several implementations — ours, Tianshou 2.0.1 with PyTorch's fused Adam kernel,
Tianshou with its default (for-loop) Adam, d3rlpy 2.8.1 — each **in its own process** (d3rlpy
in its own virtual environment), so no library's imports, allocator state or thread pools
touch another's. The driver keeps every process alive and tells them in turn to run a block
of steps (the order rotates every round), so all sides see the same machine load; it reports
medians over rounds and the median of the per-round ratios.

This module is imported by the driver *and* is the workers' entry point —
``python -m benchmarks._lib.peers --builder MODULE --threads N``, where ``MODULE.build_side``
turns a spec into a step (``benchmarks.train_speed`` in this environment,
:mod:`benchmarks._lib.d3rlpy_side` in d3rlpy's) — so it imports nothing outside the standard
library at module level.

Protocol (one JSON object per line; the worker answers every request with one line on a
private copy of its stdout — anything a library prints goes to stderr):

- ``{"cmd": "build", "id": ID, "spec": {...}}`` → ``{"info": {...}}`` (build and warm up);
- ``{"cmd": "run", "id": ID, "seconds": S}`` → ``{"steps": N, "elapsed": T}`` (at least
  3 steps and at least S seconds);
- ``{"cmd": "floor", "id": ID, "steps": N, "top": K}`` → :func:`benchmarks._lib.floor.profile_steps`'s dict;
- ``{"cmd": "drop", "id": ID}``, ``{"cmd": "quit"}``.

Errors come back as ``{"error": traceback}`` and are raised in the driver as
:class:`WorkerError`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import site
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
D3RLPY_VERSION = "2.8.1"
DEFAULT_D3RLPY_VENV = Path.home() / ".cache" / "tianshou-offline" / "d3rlpy-venv"

Step = Callable[[], object]
Builder = Callable[[dict[str, Any]], tuple[Step, dict[str, Any]]]
"""Build one algorithm from a spec: returns its gradient step and facts about it (optimizer
kernel, parameter count, …) for the table."""


# ----------------------------------------------------------------------------- worker side


def serve(build: Builder, threads: int) -> None:
    """The worker loop: read requests from stdin, answer on a private copy of stdout.

    :param build: turns a spec into a step function (called once per ``build`` request).
    :param threads: ``torch.set_num_threads`` for this process (fixed before anything runs).
    """
    import torch

    torch.set_num_threads(threads)
    reply: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints must not corrupt the protocol
    steps: dict[str, Step] = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = _handle(request, steps, build)
        except Exception:
            answer = {"error": traceback.format_exc()}
        reply.write(json.dumps(answer) + "\n")
        if request["cmd"] == "quit":
            return


def _handle(request: dict[str, Any], steps: dict[str, Step], build: Builder) -> dict[str, Any]:
    cmd = request["cmd"]
    if cmd == "build":
        step, info = build(request["spec"])
        start = time.perf_counter()
        n = 0
        while n < 5 or time.perf_counter() - start < request.get("warmup_s", 0.5):
            step()
            n += 1
        steps[request["id"]] = step
        import torch

        info.setdefault("torch", torch.__version__)
        info["threads"] = torch.get_num_threads()
        return {"info": info}
    if cmd == "run":
        return _run(steps[request["id"]], float(request["seconds"]))
    if cmd == "floor":
        from benchmarks._lib.floor import profile_steps

        return profile_steps(steps[request["id"]], int(request["steps"]), int(request["top"]))
    if cmd == "drop":
        steps.pop(request["id"], None)
        import gc

        gc.collect()
        return {}
    if cmd == "quit":
        return {}
    raise ValueError(f"unknown command {cmd!r}")


def _run(step: Step, seconds: float) -> dict[str, Any]:
    _wait_for_device()
    n = 0
    start = time.perf_counter()
    while True:
        step()
        n += 1
        if n >= 3 and time.perf_counter() - start >= seconds:
            _wait_for_device()  # the steps still queued on a GPU belong to this block
            return {"steps": n, "elapsed": time.perf_counter() - start}


def _wait_for_device() -> None:
    """Wait for the GPU's queued work, where this process uses CUDA (on a CPU: nothing)."""
    import torch

    initialized: Callable[[], bool] = torch.cuda.is_initialized
    if torch.cuda.is_available() and initialized():
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- driver side


class WorkerError(RuntimeError):
    """A worker failed (its traceback, or the tail of its stderr, is the message)."""


class Worker:
    """One worker process (one library) serving the protocol above.

    :param name: a label for messages.
    :param argv: the command line (a Python interpreter and a runner script).
    :param threads: the torch thread count (also set as ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``).
    """

    def __init__(self, name: str, argv: Sequence[str], threads: int) -> None:
        self.name = name
        env = child_env(threads)
        self._log = tempfile.NamedTemporaryFile(
            "w+", prefix=f"train_speed_{name}_", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
            env=env,
            cwd=str(REPO),
        )

    def request(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise WorkerError(f"{self.name} exited:\n{self.stderr_tail()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise WorkerError(f"{self.name}: {req.get('cmd')} {req.get('id')}:\n{answer['error']}")
        return answer

    def stderr_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        text = Path(self._log.name).read_text(errors="replace")
        return text[-chars:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request(cmd="quit")
            except WorkerError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


@dataclass
class Side:
    """One implementation in a row: which worker builds it and from what spec."""

    key: str
    """Column key, e.g. ``ours``, ``tianshou-fused``, ``tianshou-default``, ``d3rlpy``."""
    worker: str
    spec: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    ms: list[float] = field(default_factory=list)
    """ms per gradient step, one per round."""
    floor: dict[str, Any] | None = None
    """The last profile (:func:`~benchmarks._lib.floor.profile_steps`), with ``floor_ms`` and ``profiled_ms``
    replaced by the medians over the floor rounds."""
    floors: list[float] = field(default_factory=list)
    profiled: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.ms)


@dataclass
class Row:
    """One algorithm in one setting, with every side that implements it."""

    key: str
    label: str
    sides: list[Side]
    ours: list[tuple[str, str]] = field(default_factory=lambda: [("ours", "")])
    """Our sides and the table line each gets (``(side key, label suffix)``): a variant of ours
    (e.g. a peer's target rule) is timed in the same rounds and compared with the same peers."""
    notes: list[str] = field(default_factory=list)
    """Differences in the work the sides do (printed under the table)."""

    def side(self, key: str) -> Side | None:
        return next((s for s in self.sides if s.key == key), None)

    def ratios(self, ours: str, peer: str) -> list[float]:
        """Per-round speed ratios ``ours / peer`` (``peer ms / ours ms``)."""
        a, b = self.side(ours), self.side(peer)
        if a is None or b is None or not a.ms or not b.ms:
            return []
        return [p / o for o, p in zip(a.ms, b.ms, strict=True)]


def measure_row(
    row: Row,
    workers: dict[str, Worker],
    *,
    rounds: int,
    seconds: float,
    floor_steps: int | None,
    floor_rounds: int = 3,
    top: int = 0,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> None:
    """Build every side, time them in interleaved rounds, profile their floors, drop them.

    Round ``r`` runs the sides in an order rotated by ``r`` (and reversed every other round),
    each for ``seconds``; one process runs at a time.

    :param floor_steps: steps to profile per side and floor round (None: no profile; a side
        whose median step is long gets fewer: about 1 s each, at least 2).
    :param floor_rounds: profile every side this many times, interleaved as the timing
        rounds are; the floor is the median (a loaded machine inflates single profiles).
    :param top: also return each side's ``top`` operators by self time.
    """
    ids = {s.key: f"{row.key}:{s.key}" for s in row.sides}
    try:
        for s in row.sides:
            s.info = workers[s.worker].request(cmd="build", id=ids[s.key], spec=s.spec)["info"]
        n = len(row.sides)
        for r in range(rounds):
            order = row.sides[r % n :] + row.sides[: r % n]
            if r % 2:
                order.reverse()
            for s in order:
                out = workers[s.worker].request(cmd="run", id=ids[s.key], seconds=seconds)
                s.ms.append(1000.0 * out["elapsed"] / out["steps"])
        if floor_steps:
            for r in range(floor_rounds):
                order = row.sides[r % n :] + row.sides[: r % n]
                for s in order:
                    steps = max(2, min(floor_steps, int(1000.0 / s.median_ms)))
                    prof = workers[s.worker].request(
                        cmd="floor", id=ids[s.key], steps=steps, top=top
                    )
                    s.floors.append(prof["floor_ms"])
                    s.profiled.append(prof["profiled_ms"])
                    s.floor = prof
            for s in row.sides:
                assert s.floor is not None
                s.floor["floor_ms"] = statistics.median(s.floors)
                s.floor["profiled_ms"] = statistics.median(s.profiled)
    finally:
        for s in row.sides:
            w = workers.get(s.worker)
            if w is not None and w.proc.poll() is None:
                try:
                    w.request(cmd="drop", id=ids[s.key])
                except WorkerError:
                    pass
    log(f"  {row.key} done")


D3RLPY_BUILDER = "benchmarks._lib.d3rlpy_side"
"""The builder module of the ``d3rlpy`` worker (run with d3rlpy's interpreter)."""


def run_rows(
    rows: Sequence[Row],
    *,
    builder: str,
    threads: int,
    d3rlpy: str | None,
    rounds: int,
    seconds: float,
    floor_steps: int | None,
    floor_rounds: int = 3,
    top: int = 0,
) -> list[Row]:
    """Start one worker per side family the rows need (``ours``, ``tianshou-fused``,
    ``tianshou-default`` with this interpreter and ``builder``'s ``build_side``; ``d3rlpy``
    with ``d3rlpy``'s and :data:`D3RLPY_BUILDER`, or its sides are dropped when None),
    measure every row (:func:`measure_row`), stop the workers.

    :returns: the rows that were measured (with their sides' timings and floors).
    """
    rows = [
        dataclasses.replace(r, sides=[s for s in r.sides if s.worker != "d3rlpy" or d3rlpy])
        for r in rows
    ]
    names = list(dict.fromkeys(s.worker for r in rows for s in r.sides))
    workers: dict[str, Worker] = {}
    try:
        for name in names:
            python = d3rlpy if name == "d3rlpy" else sys.executable
            assert python is not None
            module = D3RLPY_BUILDER if name == "d3rlpy" else builder
            argv = [python, "-m", __name__, "--builder", module, "--threads", str(threads)]
            workers[name] = Worker(name, argv, threads)
        for row in rows:
            measure_row(
                row,
                workers,
                rounds=rounds,
                seconds=seconds,
                floor_steps=floor_steps,
                floor_rounds=floor_rounds,
                top=top,
            )
    finally:
        for w in workers.values():
            w.close()
    return rows


def print_rows(rows: Sequence[Row], columns: Sequence[tuple[str, str]], top: bool) -> None:
    """The table, the optimizer kernels, the notes on work differences (and profiles)."""
    print(format_rows(rows, columns))
    print("\noptimizer kernel per side (as built; fused-Adam kernel calls seen by the profiler):")
    print(format_kernels(rows))
    notes = format_notes(rows)
    if notes:
        print("\nwhere the sides do different network work:")
        print(notes)
    if top:
        print(format_top(rows))


# ----------------------------------------------------------------------------- d3rlpy venv


def d3rlpy_python(path: str | None, *, create: bool, torch_version: str) -> str | None:
    """The Python interpreter of a virtual environment with d3rlpy 2.8.1.

    :param path: an interpreter given by the user (``--d3rlpy-python``), used as it is after
        a version check; None looks in :data:`DEFAULT_D3RLPY_VENV`.
    :param create: create :data:`DEFAULT_D3RLPY_VENV` when it is missing (pip: torch at
        ``torch_version`` first, then d3rlpy with torch pinned, so pip never swaps torch).
    :param torch_version: this environment's ``torch.__version__`` (the local build suffix
        such as ``+cpu`` is dropped for pip).
    :returns: the interpreter, or None when there is none and ``create`` is false.
    :raises WorkerError: the interpreter lacks d3rlpy 2.8.1 or a torch of the same version.
    """
    if path is None:
        python = DEFAULT_D3RLPY_VENV / "bin" / "python"
        if not python.exists():
            if not create:
                return None
            _create_venv(torch_version.split("+")[0])
        _see_this_environment(DEFAULT_D3RLPY_VENV)
        path = str(python)
    probe = subprocess.run(
        [
            path,
            "-c",
            "import tianshou, d3rlpy, torch; print(d3rlpy.__version__, torch.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    found = probe.stdout.split()
    if probe.returncode != 0 or len(found) != 2:
        raise WorkerError(
            f"{path}: cannot import d3rlpy, torch and tianshou (its worker builds the "
            f"settings with this package):\n{probe.stderr[-2000:]}"
        )
    if found[0] != D3RLPY_VERSION or found[1].split("+")[0] != torch_version.split("+")[0]:
        raise WorkerError(
            f"{path}: found d3rlpy {found[0]} with torch {found[1]}; expected d3rlpy "
            f"{D3RLPY_VERSION} with torch {torch_version} (the same kernels on both sides)"
        )
    return path


def _see_this_environment(venv: Path) -> None:
    """Make ``venv`` see this environment's packages when this interpreter runs in a virtual
    environment of its own: ``--system-site-packages`` only reaches the base interpreter's,
    while the d3rlpy worker imports this package's settings (tianshou, gymnasium, h5py) from
    here. A ``.pth`` file in ``venv``'s site-packages appends this environment's site-packages
    to its path (after its own, so d3rlpy's requirements installed there come first; only the
    path is added, so this environment's own ``.pth`` hooks such as an editable install's
    finder do not run there). Rewritten on every use, so a venv made from another
    environment follows the current one."""
    if sys.prefix == sys.base_prefix:
        return
    here = [p for p in dict.fromkeys(site.getsitepackages()) if Path(p).is_dir()]
    for lib in sorted((venv / "lib").glob("python*/site-packages")):
        pth = lib / "_tianshou_offline_parent_env.pth"
        text = "".join(f"{p}\n" for p in here)
        if not pth.exists() or pth.read_text() != text:
            pth.write_text(text)


def _create_venv(torch_version: str) -> None:
    """Make :data:`DEFAULT_D3RLPY_VENV`: a venv that sees this environment's packages
    (``--system-site-packages``), so that it runs this very torch build (the same kernels,
    and no second download of torch), with d3rlpy and its own requirements installed into
    it (they shadow this environment's versions there only; torch pinned)."""
    venv = DEFAULT_D3RLPY_VENV
    print(f"creating {venv} (torch {torch_version}, d3rlpy {D3RLPY_VERSION})", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pin:
        pin.write(f"torch=={torch_version}\n")
    try:
        subprocess.run(
            [*pip, "-c", pin.name, f"d3rlpy=={D3RLPY_VERSION}", f"torch=={torch_version}"],
            check=True,
        )
    finally:
        Path(pin.name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- formatting


def fmt_ratio(values: Sequence[float]) -> str:
    """``median× (min–max)`` of per-round ratios, or ``n/a``."""
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f}× ({min(values):.2f}–{max(values):.2f})"


def format_rows(rows: Sequence[Row], columns: Sequence[tuple[str, str]]) -> str:
    """Markdown table, one line per (row, our side): ms/step of every side (median over
    rounds); ours ÷ each peer (median of the per-round speed ratios, their range); ours ÷ the
    faster peer on the same footing (the fused-Adam peers; ``*-default`` columns are context)
    against the 1.5× target; every side's floor; the ceiling (faster peer's ms ÷ our floor).

    :param columns: ``(side key, header)`` of the peers, in order.
    """
    head = ["algorithm", "ours ms", *(f"{h} ms" for _, h in columns)]
    head += [*(f"÷ {h}" for _, h in columns), "÷ faster peer", "≥ 1.5×"]
    head += ["floor ms: ours", *(h for _, h in columns), "ceiling"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in rows:
        peer_ms = {k: s.median_ms for k, _ in columns if (s := row.side(k)) is not None and s.ms}
        footing = [k for k in peer_ms if not k.endswith("-default")]
        fastest = min(footing, key=lambda k: peer_ms[k]) if footing else None
        for ours, suffix in row.ours:
            our = row.side(ours)
            if our is None or not our.ms:
                continue
            cells = [row.label + suffix, f"{our.median_ms:.2f}"]
            cells += [f"{peer_ms[k]:.2f}" if k in peer_ms else "n/a" for k, _ in columns]
            cells += [fmt_ratio(row.ratios(ours, k)) for k, _ in columns]
            if fastest is not None:
                r = statistics.median(row.ratios(ours, fastest))
                cells += [f"{r:.2f}× ({dict(columns)[fastest]})", "yes" if r >= 1.5 else "**no**"]
            else:
                cells += ["n/a", "n/a"]
            for key in [ours, *(k for k, _ in columns)]:
                s = row.side(key)
                cells.append(f"{s.floor['floor_ms']:.2f}" if s is not None and s.floor else "n/a")
            if fastest is not None and our.floor:
                cells.append(f"{peer_ms[fastest] / our.floor['floor_ms']:.2f}×")
            else:
                cells.append("n/a")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_notes(rows: Sequence[Row]) -> str:
    """The rows' notes on differences in work, numbered by row."""
    return "\n".join(f"- {row.label}: {note}" for row in rows for note in row.notes)


def format_kernels(rows: Sequence[Row]) -> str:
    """Per row and side: the optimizers it was built with and the fused-Adam kernel calls per
    step its profile saw (the check that "fused" is true)."""
    out: list[str] = []
    for row in rows:
        cells = []
        for s in row.sides:
            label = f"{s.key}: {s.info.get('optimizer', '?')}"
            if s.floor is not None:
                label += f" ({s.floor['fused_adam_per_step']:.1f} fused calls/step)"
            cells.append(label)
        out.append(f"- {row.label}: " + "; ".join(cells))
    return "\n".join(out)


def format_top(rows: Sequence[Row]) -> str:
    """Each side's operators with the most self time per step (``--profile-top``)."""
    out: list[str] = []
    for row in rows:
        for s in row.sides:
            if not s.floor or not s.floor.get("top"):
                continue
            out.append(
                f"\n{row.label} — {s.key}: {s.median_ms:.2f} ms/step timed, "
                f"{s.floor['profiled_ms']:.2f} ms/step under the profiler, floor "
                f"{s.floor['floor_ms']:.2f} ms"
            )
            for name, ms, calls in s.floor["top"]:
                out.append(f"    {ms:7.3f} ms  {calls:6.1f}×  {name}")
    return "\n".join(out)


def child_env(threads: int | None = None) -> dict[str, str]:
    """The environment of a benchmark's child process: this repository importable (the
    child runs ``python -m benchmarks.…``), TensorFlow's logging off, and with ``threads``
    the BLAS/OpenMP thread counts."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def main(argv: Sequence[str] | None = None) -> None:
    """A worker: ``python -m benchmarks._lib.peers --builder MODULE --threads N`` serves
    ``MODULE.build_side`` until ``quit``."""
    p = argparse.ArgumentParser()
    p.add_argument("--builder", required=True, help="module with build_side(spec)")
    p.add_argument("--threads", type=int, required=True)
    args = p.parse_args(argv)
    build: Builder = importlib.import_module(args.builder).build_side
    serve(build, args.threads)


if __name__ == "__main__":
    main()

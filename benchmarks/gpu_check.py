"""GPU check: every algorithm's gradient step on a device, its host-device synchronisations
per step, and its speed against d3rlpy's (``compile_graph`` off and on).

One command, two parts:

1. **Synchronisations.** Every registered algorithm (:data:`CONFIG_CLASSES`, continuous and
   discrete, the Decision Transformer included) is built by ``make_algorithm`` with
   ``--hidden``-wide networks on ``--device`` (and, where it has a seed-batched form, as a
   seed batch of 3 seeds: the ``seed-batch`` line), trains ``--warmup`` steps (optimizer
   state is created there), then ``--steps`` steps through ``algorithm.update(buffer, batch_size)`` (as
   Tianshou's ``OfflineTrainer`` calls it) inside a :class:`~benchmarks._lib.syncs.SyncCounter`:
   every call that would make the host wait for the device (``.item()``, ``.cpu()``, ``bool``
   of a tensor, boolean-mask indexing, …) is counted, on a CPU through the same code path as
   on a GPU; on CUDA PyTorch's own sync reports (``set_sync_debug_mode``) are counted too.
   On CUDA (``--compiled``) the steps with ``compile=True`` and with ``cuda_graphs=True``
   are counted as well, by CUDA's reports only (the counting mode would make compiled
   networks recompile); a variant that fails is reported, the run goes on. Each
   algorithm's dataset must be on the device. The target is 0 per step for every algorithm;
   ``--check`` exits 1 otherwise.
2. **Speed** (``--time``; on by default on CUDA): the speed benchmark's continuous rows
   (:mod:`benchmarks._lib.sides_continuous`, 256×256 MLPs, batch 256, the same
   hyperparameters on every side) on ``--device``, each side in its own process
   (:mod:`benchmarks._lib.peers`): ours eager, with ``compile=True`` and with CUDA graphs
   (``compile=True, cuda_graphs=True``), d3rlpy 2.8.1 and d3rlpy with ``compile_graph=True``
   (torch.compile and CUDA graphs; d3rlpy applies it on CUDA only). Every timed block ends
   with ``torch.cuda.synchronize()``; a row whose side fails is reported and skipped.

``--device cpu`` is the smoke mode the test suite runs (small networks, a few steps, no
timing): it shows that the check runs to completion and that no step synchronises.

Usage (from the repository root)::

    python -m benchmarks.gpu_check --device cuda --check      # the GPU run; keeps its result
    python -m benchmarks.gpu_check --device cpu --check       # the smoke mode (seconds)
"""

from __future__ import annotations

import tianshou_offline.cli._no_tensorflow  # noqa: F401  (first: no TensorFlow in workers)

# isort: split

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.data import ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

from benchmarks._lib import results
from benchmarks._lib import sides_continuous as cont
from benchmarks._lib import sides_discrete as disc
from benchmarks._lib.peers import Row, Side, WorkerError, d3rlpy_python, print_rows, run_rows
from benchmarks._lib.syncs import SyncCounter
from tianshou_offline.algorithms.registry import CONFIG_CLASSES, make_algorithm
from tianshou_offline.algorithms.seeds import SEED_BATCHES, make_seed_batch

BENCHMARK = "gpu_check"
CODE = (
    "benchmarks/gpu_check.py",
    "benchmarks/_lib/syncs.py",
    "benchmarks/_lib/peers.py",
    "benchmarks/_lib/d3rlpy_side.py",
    "benchmarks/_lib/sides_continuous.py",
    "tianshou_offline/algorithms",
)
SEED_BATCH_K = 3
"""Seeds of the ``seed-batch`` variant (every algorithm that has a seed-batched form)."""
TIMED = ("il", "bcq", "cql", "td3bc", "crr", "iql", "rebrac", "awac")
"""The speed benchmark's continuous rows that d3rlpy also has."""
COLUMNS = [("d3rlpy", "d3rlpy"), ("d3rlpy-compiled", "d3rlpy compile_graph")]
"""The peers' columns (ours: eager, ``compile=True`` and ``cuda_graphs=True`` lines)."""


def _spaces(kind: str) -> tuple[gym.Space[Any], gym.Space[Any]]:
    if kind == "continuous":
        return (
            gym.spaces.Box(-np.inf, np.inf, (17,), np.float32),
            gym.spaces.Box(-1.0, 1.0, (6,), np.float32),
        )
    return disc.CARTPOLE.obs_space, gym.spaces.Discrete(disc.CARTPOLE.num_actions)


def _buffer(kind: str, size: int) -> ReplayBuffer:
    """HalfCheetah-shaped (continuous) or CartPole-shaped (discrete) synthetic transitions."""
    if kind == "continuous":
        return cont.synthetic_buffer(17, 6, size)
    return disc.synthetic_buffer(disc.CARTPOLE, size, episode_len=200)


def _overrides(cls: Any, hidden: int, small: bool) -> dict[str, Any]:
    """``--hidden`` widths for whatever fields the config has (MLP widths, a discrete trunk,
    the Decision Transformer's embedding); ``small``: one transformer layer, context 5."""
    fields = set(cls.field_names())
    wanted: dict[str, Any] = {
        "hidden_sizes": (hidden,) if cls.action_kind == "discrete" else (hidden, hidden),
        "trunk_sizes": (hidden, hidden),
        "embed_dim": hidden,
    }
    if small:
        wanted.update(n_layers=1, context=5)
    return {k: v for k, v in wanted.items() if k in fields}


def count_syncs(
    kind: str,
    name: str,
    buffer: ReplayBuffer,
    *,
    device: str,
    hidden: int,
    batch_size: int,
    warmup: int,
    steps: int,
    variant: str = "eager",
) -> dict[str, Any]:
    """Build ``name`` on ``device``, train ``warmup`` steps, then count the synchronising
    calls of each of ``steps`` steps: the per-step counts and where they were made.

    :param variant: ``eager``; ``seed-batch`` (:data:`SEED_BATCH_K` seeds as one seed batch,
        :func:`~tianshou_offline.algorithms.seeds.make_seed_batch`, counted as ``eager``);
        ``compiled`` (``compile=True``) or ``cuda-graphs`` (``compile=True,
        cuda_graphs=True``), counted by CUDA's own reports only (the counting mode would make
        the compiled networks recompile).
    """
    torch.manual_seed(0)
    obs_space, act_space = _spaces(kind)
    cls = next(c for c in CONFIG_CLASSES if c.name == name and c.action_kind == kind)
    overrides = _overrides(cls, hidden, small=not device.startswith("cuda"))
    algo: Any
    if variant == "seed-batch":
        algo = make_seed_batch(
            name, obs_space, act_space, seeds=SEED_BATCH_K, device=device, **overrides
        )
    else:
        if variant != "eager":
            overrides.update(compile=True, cuda_graphs=variant == "cuda-graphs")
        algo = make_algorithm(name, obs_space, act_space, device=device, **overrides)
    dataset = algo.dataset_for(buffer)
    per_step: list[int] = []
    cuda: list[int] = []
    with policy_within_training_step(algo.policy):
        for _ in range(warmup):
            algo.update(buffer, batch_size)
        with SyncCounter(torch_functions=variant in ("eager", "seed-batch")) as counter:
            for _ in range(steps):
                counter.reset()
                algo.update(buffer, batch_size)
                per_step.append(counter.count)
                cuda.append(counter.cuda_syncs())
    return {
        "kind": kind,
        "algorithm": name,
        "variant": variant,
        "dataset_device": str(dataset.device),
        "compiled": bool(getattr(algo, "compiled", False)),
        "syncs_per_step": per_step if variant in ("eager", "seed-batch") else None,
        "cuda_reported_per_step": cuda if device.startswith("cuda") else None,
        "sites": dict(counter.sites),
    }


def _has_seed_batch(kind: str, name: str) -> bool:
    """Whether the algorithm (as :func:`count_syncs` builds it) has a seed-batched form."""
    obs_space, act_space = _spaces(kind)
    cls = next(c for c in CONFIG_CLASSES if c.name == name and c.action_kind == kind)
    algo = make_algorithm(name, obs_space, act_space, **_overrides(cls, 8, small=True))
    return type(algo) in SEED_BATCHES


def timed_rows(args: argparse.Namespace) -> list[Row]:
    """Ours (eager and compiled) and d3rlpy (compile_graph off and on) for :data:`TIMED`."""
    common = {
        "obs_dim": 17,
        "act_dim": 6,
        "hidden": [args.hidden, args.hidden],
        "batch_size": args.batch_size,
        "buffer_size": args.buffer_size,
        "seed": 0,
    }
    rows: list[Row] = []
    for key in TIMED:
        base = {"suite": "continuous", "algo": key, "device": args.device, **common}
        ours = {**base, "impl": "ours", "adam": "fused"}
        sides = [
            Side("ours", "ours", ours),
            Side("ours-compiled", "ours", {**ours, "compile": True}),
            Side("ours-cuda-graphs", "ours",
                 {**ours, "compile": True, "compile_mode": "reduce-overhead"}),
        ]  # fmt: skip
        spec = cont.d3rlpy_spec(key, {**common, "adam": "fused"})
        if spec is not None:
            spec["device"] = f"{args.device}:0" if ":" not in args.device else args.device
            sides.append(Side("d3rlpy", "d3rlpy", spec))
            sides.append(Side("d3rlpy-compiled", "d3rlpy", {**spec, "compile_graph": True}))
        rows.append(Row(key=f"continuous:{key}", label=key, sides=sides,
                        ours=[("ours", ""), ("ours-compiled", " — compile=True"),
                              ("ours-cuda-graphs", " — compile=True, cuda_graphs=True")]))  # fmt: skip
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (the smoke mode)")
    p.add_argument("--hidden", type=int, default=None, help="MLP width (cuda 256, cpu 32)")
    p.add_argument("--batch-size", type=int, default=None, help="(cuda 256, cpu 32)")
    p.add_argument("--buffer-size", type=int, default=None, help="(cuda 100000, cpu 2000)")
    p.add_argument("--warmup", type=int, default=3, help="steps before counting")
    p.add_argument("--steps", type=int, default=None, help="steps counted (cuda 300, cpu 3)")
    p.add_argument("--algorithms", nargs="*", default=None, help="kind:name, default all")
    p.add_argument("--time", action=argparse.BooleanOptionalAction, default=None,
                   help="time ours against d3rlpy (default: on CUDA)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0, help="per side and round")
    p.add_argument("--d3rlpy-python", default=None, help="d3rlpy's interpreter")
    p.add_argument("--check", action="store_true", help="exit 1 when a step synchronises")
    p.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=None,
                   help="also count compile=True and cuda_graphs=True steps (default: on CUDA)")  # fmt: skip
    p.add_argument("--keep", action=argparse.BooleanOptionalAction, default=None,
                   help="write the result file (default: on CUDA)")  # fmt: skip
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    for name, on_gpu, on_cpu in (
        ("hidden", 256, 32), ("batch_size", 256, 32), ("buffer_size", 100_000, 2000),
        ("steps", 300, 3), ("time", True, False), ("keep", True, False), ("compiled", True, False),
    ):  # fmt: skip
        if getattr(args, name) is None:
            setattr(args, name, on_gpu if gpu else on_cpu)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device}: no CUDA device is available", file=sys.stderr)
        return 2
    chosen = args.algorithms or [f"{c.action_kind}:{c.name}" for c in CONFIG_CLASSES]
    load = results.LoadMonitor().start()
    buffers: dict[str, ReplayBuffer] = {}
    counts: list[dict[str, Any]] = []
    variants = ["eager", "compiled", "cuda-graphs"] if args.compiled else ["eager"]
    for item in chosen:
        kind, _, name = item.partition(":")
        if kind not in buffers:
            buffers[kind] = _buffer(kind, args.buffer_size)
        seeds = ["seed-batch"] if _has_seed_batch(kind, name) else []
        for variant in [variants[0], *seeds, *variants[1:]]:
            start = time.perf_counter()
            try:
                out = count_syncs(kind, name, buffers[kind], device=args.device,
                                  hidden=args.hidden, batch_size=args.batch_size,
                                  warmup=args.warmup, steps=args.steps, variant=variant)  # fmt: skip
            except Exception as exc:  # a compiled variant that fails is reported, not fatal
                if variant in ("eager", "seed-batch"):
                    raise
                out = {"kind": kind, "algorithm": name, "variant": variant,
                       "error": f"{type(exc).__name__}: {str(exc)[:300]}"}  # fmt: skip
                print(f"{kind:10} {name:6} {variant}: {out['error']}", flush=True)
                counts.append(out)
                continue
            out["seconds"] = round(time.perf_counter() - start, 2)
            counts.append(out)
            own = out["syncs_per_step"]
            cuda = out["cuda_reported_per_step"]
            shown = [f"syncs/step max {max(own)}"] if own is not None else []
            shown += [f"CUDA-reported max {max(cuda)}"] if cuda else []
            shown = shown or ["not counted off CUDA"]
            sites = "; ".join(f"{s} ×{n}" for s, n in out["sites"].items())
            print(f"{kind:10} {name:6} {variant:11} {', '.join(shown)}; dataset on "
                  f"{out['dataset_device']} ({out['seconds']} s)"
                  + (f" — {sites}" if sites else ""), flush=True)  # fmt: skip
    missed = [
        f"{c['kind']}:{c['algorithm']} ({c['variant']})"
        for c in counts
        if max(c.get("syncs_per_step") or [0]) > 0
        or max(c.get("cuda_reported_per_step") or [0]) > 0
        or c.get("dataset_device", args.device).split(":")[0] != args.device.split(":")[0]
    ]
    timing: list[dict[str, Any]] = []
    timing_errors: list[dict[str, Any]] = []
    d3rlpy_version: str | None = None
    if args.time:
        try:
            python = d3rlpy_python(args.d3rlpy_python, create=False,
                                   torch_version=torch.__version__)  # fmt: skip
        except Exception as exc:  # d3rlpy is optional here: ours are still timed
            print(f"d3rlpy unavailable ({exc}); timing ours only", file=sys.stderr)
            python = None
        rows: list[Row] = []
        for row in timed_rows(args):  # one row at a time: a side that fails loses its row only
            try:
                rows += run_rows([row], builder="benchmarks.train_speed", threads=1,
                                 d3rlpy=python, rounds=args.rounds, seconds=args.seconds,
                                 floor_steps=None)  # fmt: skip
            except WorkerError as exc:
                print(f"{row.key}: {str(exc)[-600:]}", file=sys.stderr, flush=True)
                timing_errors.append({"row": row.key, "error": str(exc)[-2000:]})
        print_rows(rows, COLUMNS, top=False)
        d3rlpy_version = "2.8.1" if python else None
        timing = [
            {
                "row": r.key,
                "sides": {
                    s.key: {"ms": s.ms, "median_ms": statistics.median(s.ms)}
                    for s in r.sides
                    if s.ms
                },
            }
            for r in rows
        ]
    load.stop()
    if missed:
        print(f"steps that synchronise: {', '.join(missed)}")
    if args.keep:
        settings = {
            "device": args.device,
            "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            "hidden": args.hidden, "batch_size": args.batch_size, "buffer_size": args.buffer_size,
            "warmup": args.warmup, "steps": args.steps, "rounds": args.rounds,
            "seconds": args.seconds, "algorithms": chosen, "variants": variants,
        }  # fmt: skip
        path = results.write_result(
            BENCHMARK, f"gpu-check-{args.device.split(':')[0]}", settings=settings,
            figures={"syncs": counts, "timing": timing, "timing_errors": timing_errors}, code=CODE, seeds=[0], load=load,
            d3rlpy=d3rlpy_version,
        )  # fmt: skip
        print(f"kept: {path.relative_to(results.REPO)}")
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    raise SystemExit(main())

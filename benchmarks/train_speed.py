"""Time per gradient step: tianshou-offline vs Tianshou 2.0.1 and d3rlpy 2.8.1, on equal
footing, for the continuous and the discrete algorithms.

The sides, **each in its own process** (:mod:`benchmarks._lib.peers`):

- **ours** — tianshou-offline (which steps PyTorch's fused Adam kernel);
- **Tianshou fused** — Tianshou 2.0.1 with ``TorchOptimizerFactory(torch.optim.Adam, lr=…,
  fused=True)``: the same optimizer kernel as ours, the headline comparison;
- **Tianshou default** — Tianshou with its default ``AdamOptimizerFactory`` (PyTorch's
  for-loop Adam on CPU), for context: what a Tianshou user runs;
- **ours, compile=True** — ours with its networks compiled (``torch.compile``, inductor;
  ``OfflineAlgorithmCore.compile_step``), on every row beside the eager step (compiled
  while the worker warms up, before any timing; ``--no-compiled`` leaves it out); shown, not
  held to the target; where an algorithm cannot be compiled (``compile_unsupported``) or the
  compilation failed, the step stays eager and the row's label says so (``eager: why``);
- **d3rlpy** — d3rlpy 2.8.1 in its own virtual environment (``--d3rlpy-python``, or created
  under ``~/.cache/tianshou-offline/d3rlpy-venv``; never a dependency of this package), with a
  fused Adam through its public ``OptimizerFactory`` interface
  (:mod:`benchmarks._lib.d3rlpy_side`). A step is its ``fit`` loop's:
  ``sample_transition_batch`` then ``update``.

Suites (``--suite``): **continuous** (:mod:`benchmarks._lib.sides_continuous`: 256×256 MLPs,
batch 256, HalfCheetah-shaped synthetic data) and **discrete**
(:mod:`benchmarks._lib.sides_discrete`: CartPole MLPs and the Atari Nature-DQN conv net,
``--only`` one of them; Tianshou gets our network modules, d3rlpy an encoder with our layers).
DiscreteCQL: ours and Tianshou's are CQL(H) on QR-DQN; d3rlpy's is on (double) DQN; the
``mean-Q`` rows run ours and Tianshou's with 2 quantiles and the double-DQN target rule.

Measurement: every process builds and warms up its algorithm, then the driver runs them one at
a time for ``--seconds`` each, in an order rotated every round, for ``--rounds`` rounds, with
the same torch thread count (``--threads``; several values run one after another). Reported:
median ms per step, and for each peer the median (and range) of the per-round ratios ours ÷
peer (speed ratio: >1 is ours faster). Target: ≥ 1.5× the faster peer on the same footing
(Tianshou fused, d3rlpy); ``--check`` exits 1 when a row misses it.

Floors (:mod:`benchmarks._lib.floor`): after the rounds every side is profiled for the time
its step spends in matrix products, activations and the fused Adam kernel. The ceiling (the
faster peer's ms ÷ our floor) is the largest ratio reachable with our amount of network work.
``--profile-top K`` also lists each side's K operators with the most self time.

Every run writes one result file per suite and thread count under
``benchmarks/results/train_speed/`` (:mod:`benchmarks._lib.results`); ``--table-only``
prints the README's tables from the kept results, ``--readme`` writes them into README.md.

Usage (from the repository root)::

    python -m benchmarks.train_speed --threads 1 2          # everything, 1 then 2 threads
    python -m benchmarks.train_speed --suite continuous --algorithms cql,bcq --profile-top 15
    python -m benchmarks.train_speed --suite discrete --only atari --discrete-algorithms il bcq
    python -m benchmarks.train_speed --table-only           # the tables of the kept results

(Replaces ``train_speed_discrete.py`` — its ``--algorithms`` is ``--discrete-algorithms``
here — and ``--json``/``--summary-from``: the result files and ``--table-only``.)
"""

from __future__ import annotations

import tianshou_offline.cli._no_tensorflow  # noqa: F401  (first: no TensorFlow in workers)

# isort: split

import argparse
import functools
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import torch
from tianshou.utils.torch_utils import policy_within_training_step

from benchmarks._lib import report, results
from benchmarks._lib import sides_continuous as cont
from benchmarks._lib import sides_discrete as disc
from benchmarks._lib.floor import describe_optimizers, find_optimizers
from benchmarks._lib.peers import Row, Side, Step, d3rlpy_python, print_rows, run_rows

BENCHMARK = "train_speed"
CODE = (
    "benchmarks/train_speed.py",
    "benchmarks/_lib/sides_continuous.py",
    "benchmarks/_lib/sides_discrete.py",
    "benchmarks/_lib/field_map.py",
    "benchmarks/_lib/d3rlpy_side.py",
    "tianshou_offline/algorithms",
    "tianshou_offline/data",
)
"""The code a speed run depends on (its result key includes their fingerprint)."""
TARGET = 1.5
"""Ours ÷ the faster peer on the same footing."""
COMPILED = "ours-compiled"
"""The side of ours with ``compile=True`` (every row, beside the eager step; not held to
:data:`TARGET`)."""
COLUMNS = [
    ("tianshou-fused", "Tianshou fused"),
    ("tianshou-default", "Tianshou default"),
    ("d3rlpy", "d3rlpy"),
]


# ------------------------------------------------------------------- worker side


def build_side(spec: dict[str, Any]) -> tuple[Step, dict[str, Any]]:
    """Build ours or Tianshou's algorithm from a spec (a worker of this environment,
    :func:`benchmarks._lib.peers.main`): its gradient step (``algorithm.update(buffer,
    batch_size)``, as Tianshou's ``OfflineTrainer`` calls it) and facts for the table."""
    torch.manual_seed(spec["seed"])
    sides = cont if spec["suite"] == "continuous" else disc
    algo, buffer, batch_size, library = sides.build(spec)
    if spec.get("device"):
        algo.to(spec["device"])
    if spec.get("compile"):  # ours only: the networks compiled (OfflineAlgorithmCore)
        algo.compile_step(mode=spec.get("compile_mode"))
    algo.process_buffer(buffer)

    def step() -> None:
        with policy_within_training_step(algo.policy):
            algo.update(buffer=buffer, sample_size=batch_size)

    step()  # optimizers create their state (and ours choose the fused kernel) at step 1;
    # a compiled side compiles here (the worker's warm-up steps follow before any timing)
    info: dict[str, Any] = {
        "library": library,
        "optimizer": describe_optimizers(find_optimizers(algo)),
        "parameters": sum(p.numel() for p in algo.policy.parameters()),
    }
    if spec.get("compile"):  # whether the step is compiled after its first (compiling) step
        info["compiled"] = bool(algo.compiled)
        if not algo.compiled:
            info["eager_because"] = algo.compile_unsupported or (
                "torch.compile failed on the first step (the worker logged why)"
            )
    return step, info


def fallback_note(side: dict[str, Any]) -> str:
    """`` (eager: why)`` for a kept compiled side whose step stayed eager (an algorithm
    that cannot be compiled, or a failed compilation), else ``""``."""
    info = side.get("info") or {}
    if info.get("compiled", True):
        return ""
    return f" (eager: {info.get('eager_because', 'not compiled')})"


# ------------------------------------------------------------------- rows

ROWS: dict[str, tuple[str, list[str]]] = {
    # key: (label, notes on differences in work)
    "il": ("BC (deterministic)", []),
    "bcq": (
        "BCQ",
        [
            "the TD target: ours and d3rlpy perturb the sampled next actions with the target "
            "perturbation network (the paper's ξ_φ'), Tianshou 2.0.1 does not (one perturbation "
            "pass fewer on 10 × batch); the second 'ours' line uses Tianshou's rule "
            "(perturb_target_actions=False) — equal work with Tianshou",
        ],
    ),
    "cql": (
        "CQL (Lagrange, auto α)",
        [
            "d3rlpy evaluates the critics on the dataset actions twice per step (TD error and "
            "conservative term) where ours evaluates them once",
        ],
    ),
    "td3bc": ("TD3+BC", []),
    "crr": ("CRR (1 critic, 4 samples)", ["Tianshou 2.0.1 has no continuous CRR"]),
    "iql": (
        "IQL (Gaussian actor)",
        [
            "Tianshou 2.0.1 has no IQL",
            "V passes per step: d3rlpy V(s') before and V(s) twice (loss, then the actor's "
            "advantage after its critic step); ours V(s) for the loss, then V(s) and V(s') "
            "after the V step in one call — the same three",
        ],
    ),
    "rebrac": (
        "ReBRAC (LayerNorm critics)",
        [
            "Tianshou 2.0.1 has no ReBRAC",
            "batch 256 as every row (the paper's 1024 is a training setting, not part of the "
            "step's work per sample)",
        ],
    ),
    "sacn": ("SAC-N (N = 10)", ["Tianshou 2.0.1 and d3rlpy 2.8.1 have no SAC-N: ours alone"]),
    "edac": (
        "EDAC (N = 10, η = 1)",
        [
            "Tianshou 2.0.1 and d3rlpy 2.8.1 have no EDAC: ours alone (SAC-N's step plus the "
            "second-order action-gradient term)"
        ],
    ),
    "awac": (
        "AWAC (1 action sample)",
        [
            "Tianshou 2.0.1 has no AWAC",
            "ours with d3rlpy's batch-softmax weights (normalize_weights=True); d3rlpy's "
            "critic target is its SAC target: a tanh-squashed next action and its "
            "log-density (temperature fixed at 1), ours samples the next action only",
        ],
    ),
    "dt": (
        "Decision Transformer (K = 20, 3 blocks of 128, batch 64)",
        [
            "Tianshou 2.0.1 has no Decision Transformer",
            "d3rlpy gets ours: a Linear(obs, 128) state embedding (its default is a 256×256 "
            "MLP), GELU (its default ReLU), AdamW with weight decay 1e-4, the 10k-step warm-up "
            "and clip 0.25; a step samples 64 segments of 20 steps (d3rlpy: "
            "sample_trajectory_batch, as its fit loop)",
            "the loss: ours averages over the real steps, d3rlpy over every slot with padding "
            "masked — the same network passes",
        ],
    ),
}


LABELS = {
    "il": "DiscreteImitationLearning",
    "bcq": "DiscreteBCQ",
    "cql": "DiscreteCQL (200 quantiles)",
    "cql-mean": "DiscreteCQL, mean-Q (2 quantiles)",
    "crr": "DiscreteCRR",
}
ROW_KEYS = tuple(LABELS)

NOTES: dict[str, list[str]] = {
    "bcq": [
        "d3rlpy (share_encoder=True) evaluates the shared encoder separately for the Q head "
        "and the imitator, at s and at s' (ours: one trunk pass serves both heads), and its "
        "imitator head has no hidden layer of its own (it shares the Q head's); Tianshou gets "
        "our trunk shared between its two nets but evaluates it once per net",
    ],
    "cql": [
        "Tianshou's target selects the next action with the online network (one more forward "
        "pass at s'): the first line runs ours with that rule, the second with our default",
    ],
    "cql-mean": [
        "d3rlpy's DiscreteCQL is (double) DQN with a mean Q per action; ours and Tianshou's "
        "are QR-DQN, here with 2 quantiles (the fewest they accept; output layer 2A instead of "
        "A) and double-DQN targets like d3rlpy's; d3rlpy evaluates Q(s) twice per step (TD "
        "error and conservative term)",
    ],
    "crr": ["d3rlpy has no discrete CRR"],
}


def _row(
    key: str,
    label: str,
    base: dict[str, Any],
    *,
    variant: tuple[str, dict[str, Any], str] | None,
    tianshou: bool,
    d3rlpy: dict[str, Any] | None,
    notes: list[str],
    compiled: bool = False,
) -> Row:
    """One row: ours (and an optional variant of ours: side key, spec changes, label
    suffix; with ``compiled``, ours with ``compile=True`` as well), Tianshou fused and
    default when it has the algorithm, d3rlpy's spec if any."""
    sides = [Side("ours", "ours", {**base, "impl": "ours", "adam": "fused"})]
    ours = [("ours", "")]
    variants = [variant] if variant is not None else []
    if compiled:
        variants.append((COMPILED, {"compile": True}, " — compile=True"))
    for vkey, change, suffix in variants:
        sides.append(Side(vkey, "ours", {**base, "impl": "ours", "adam": "fused", **change}))
        ours.append((vkey, suffix))
    if tianshou:
        for adam in ("fused", "default"):
            sides.append(
                Side(
                    f"tianshou-{adam}",
                    f"tianshou-{adam}",
                    {**base, "impl": "tianshou", "adam": adam},
                )
            )
    if d3rlpy is not None:
        sides.append(Side("d3rlpy", "d3rlpy", d3rlpy))
    return Row(key=key, label=label, sides=sides, ours=ours, notes=notes)


def continuous_rows(args: argparse.Namespace, keys: Sequence[str]) -> list[Row]:
    """The continuous rows to measure: sides and specs for each algorithm (the ``speed``
    preset's settings; ``--hidden`` and ``--batch-size`` change every side's)."""
    rows: list[Row] = []
    for key in keys:
        label, notes = ROWS[key]
        common = {
            "obs_dim": args.obs_dim,
            "act_dim": args.act_dim,
            "hidden": list(getattr(cont.config(key, args.hidden), "hidden_sizes", ())),
            "batch_size": args.batch_size or cont.batch_size(key),
            "buffer_size": args.buffer_size,
            "seed": args.seed,
        }
        variant = None
        if key == "bcq":
            variant = ("ours-ts-target", {"algo": "bcq-ts-target"},
                       " — ours with Tianshou's target rule")  # fmt: skip
        rows.append(_row(
            f"continuous:{key}", label, {"suite": "continuous", "algo": key, **common},
            variant=variant, tianshou=key in cont.TIANSHOU,
            d3rlpy=cont.d3rlpy_spec(key, {**common, "adam": "fused"}), notes=notes,
            compiled=args.compiled,
        ))  # fmt: skip
    return rows


def discrete_rows(
    settings: Sequence[disc.Setting], keys: Sequence[str], seed: int = 0, compiled: bool = False
) -> list[Row]:
    """The discrete rows of ``settings``: sides and specs for each algorithm key (the
    settings' presets ``speed-cartpole`` and ``speed-atari``)."""
    rows: list[Row] = []
    for s in settings:
        for key in keys:
            name = "cql" if key == "cql-mean" else key
            overrides: dict[str, Any] = {"num_quantiles": 2} if key == "cql-mean" else {}
            base = {"suite": "discrete", "setting": s.name, "algo": name, "seed": seed,
                    "overrides": overrides}  # fmt: skip
            variant = None
            if name == "cql":
                variant = ("ours-default-target", {"overrides": {**overrides, "double_q": False}},
                           " — ours, default target (1 pass fewer)")  # fmt: skip
            rows.append(_row(
                f"{s.name}:{key}", f"{'CartPole' if s.name == 'cartpole' else 'Atari'} {LABELS[key]}",
                base, variant=variant, tianshou=True,
                d3rlpy=disc.d3rlpy_spec(name, s, seed) if key != "cql" else None,
                notes=NOTES.get(key, []), compiled=compiled,
            ))  # fmt: skip
    return rows


SUITES: dict[str, str] = {
    "continuous": "Continuous control",
    "cartpole": "Discrete, CartPole MLPs (trunk 64, head 64)",
    "atari": "Discrete, Atari Nature-DQN conv net (head 512, batch 32)",
}


def suite_rows(args: argparse.Namespace) -> dict[str, Callable[[], list[Row]]]:
    """The suites to run (name → its rows), as ``--suite``/``--only``/algorithms choose."""
    out: dict[str, Callable[[], list[Row]]] = {}
    if args.suite in ("all", "continuous"):
        out["continuous"] = lambda: continuous_rows(args, args.keys)
    if args.suite in ("all", "discrete"):
        for s in (disc.CARTPOLE, disc.ATARI):
            if args.only in (None, s.name):
                out[s.name] = functools.partial(
                    discrete_rows, [s], args.discrete_algorithms, args.seed, args.compiled
                )
    return out


# ------------------------------------------------------------------- results and tables


def settings_of(args: argparse.Namespace, suite: str, threads: int) -> dict[str, Any]:
    """Everything of a run that changes a suite's figures."""
    out: dict[str, Any] = {
        "suite": suite, "threads": threads, "rounds": args.rounds, "seconds": args.seconds,
        "floor_steps": args.floor_steps, "floor_rounds": args.floor_rounds, "seed": args.seed,
        "d3rlpy": not args.no_d3rlpy, "compiled": args.compiled,
    }  # fmt: skip
    if suite == "continuous":
        out.update(obs_dim=args.obs_dim, act_dim=args.act_dim, hidden=args.hidden,
                   batch_size=args.batch_size, buffer_size=args.buffer_size, preset=cont.PRESET,
                   algorithms=list(args.keys))  # fmt: skip
    else:
        out.update(algorithms=list(args.discrete_algorithms))
    return out


def faster_peer_ratio(row: dict[str, Any], ours: str) -> tuple[str, float] | None:
    """The faster peer on the same footing (fused Adam: Tianshou fused, d3rlpy) of a row as
    kept in a result, and the median per-round speed ratio ours ÷ it."""
    sides = {s["key"]: s for s in row["sides"]}
    peers = [k for k, _ in COLUMNS if k in sides and sides[k]["ms"] and not k.endswith("-default")]
    if not peers or not sides.get(ours, {}).get("ms"):
        return None
    fastest = min(peers, key=lambda k: statistics.median(sides[k]["ms"]))
    ratios = [p / o for o, p in zip(sides[ours]["ms"], sides[fastest]["ms"], strict=True)]
    return fastest, statistics.median(ratios)


def missed_targets(records: Sequence[dict[str, Any]]) -> list[str]:
    """Every (row, our line, thread count) below :data:`TARGET` × the faster peer."""
    out = []
    for rec in records:
        for row in rec["figures"]["rows"]:
            for ours, suffix in row["ours"]:
                if ours == COMPILED:  # measured beside the eager step, not held to the target
                    continue
                got = faster_peer_ratio(row, ours)
                if got is not None and got[1] < TARGET:
                    out.append(f"{row['label']}{suffix} ({rec['settings']['threads']}t): "
                               f"{got[1]:.2f}× {got[0]} < {TARGET}×")  # fmt: skip
    return out


def summary_table(records: Sequence[dict[str, Any]]) -> str:
    """README's tables from kept results: per row and our line, at each thread count, ours
    ms/step and ours ÷ each peer (median per-round ratio), whether ≥ 1.5× the faster
    fused-Adam peer; then each side's floor and the ceiling at the first thread count."""
    if not records:
        return results.provenance_line(records)
    by = _merged_rows(records)
    suites = list(dict.fromkeys(r["settings"]["suite"] for r in records))
    suites.sort(key=lambda s: list(SUITES).index(s))
    threads = sorted({t for _, t in by})
    peers = [k for k, _ in COLUMNS]
    head = ["algorithm"]
    for t in threads:
        head += [f"{t}t: ours ms", *(f"÷ {h}" for _, h in COLUMNS), f"≥ {TARGET}×"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    floor_lines = [
        f"| algorithm | floor ms ({threads[0]}t): ours | " + " | ".join(h for _, h in COLUMNS)
        + " | ceiling |",
        "|---|" + "---:|" * (len(COLUMNS) + 2),
    ]  # fmt: skip
    any_floor = False
    for suite in suites:
        first = next(by[(suite, t)] for t in threads if (suite, t) in by)
        for row in first["figures"]["rows"]:
            for ours, suffix in row["ours"]:
                sides = {s["key"]: s for s in row["sides"]}
                cells = [row["label"] + suffix + fallback_note(sides.get(ours, {}))]
                for t in threads:
                    rec = by.get((suite, t))
                    same = (
                        [x for x in rec["figures"]["rows"] if x["key"] == row["key"]] if rec else []
                    )
                    if not same:
                        cells += ["–"] * (len(COLUMNS) + 2)
                        continue
                    r_t = same[0]
                    ss = {s["key"]: s for s in r_t["sides"]}
                    cells.append(f"{statistics.median(ss[ours]['ms']):.2f}")
                    for p in peers:
                        ok = p in ss and ss[p]["ms"]
                        cells.append(f"{statistics.median(q / o for o, q in zip(ss[ours]['ms'], ss[p]['ms'], strict=True)):.2f}×" if ok else "–")  # fmt: skip
                    got = faster_peer_ratio(r_t, ours)
                    if got is None or ours == COMPILED:  # compiled: shown, not held to it
                        cells.append("–")
                    else:
                        cells.append("yes" if got[1] >= TARGET else "**no**")
                lines.append("| " + " | ".join(cells) + " |")
                ss = {s["key"]: s for s in row["sides"]}
                floors = [ss[k]["floor"]["floor_ms"] if k in ss and ss[k]["floor"] else None
                          for k in [ours, *peers]]  # fmt: skip
                any_floor |= floors[0] is not None
                got = faster_peer_ratio(row, ours)
                ceiling = (f"{statistics.median(ss[got[0]]['ms']) / floors[0]:.2f}×"
                           if got is not None and floors[0] else "–")  # fmt: skip
                floor_lines.append("| " + " | ".join(
                    [row["label"] + suffix, *(f"{x:.2f}" if x is not None else "–" for x in floors),
                     ceiling]) + " |")  # fmt: skip
    out = "\n".join(lines)
    if any_floor:
        out += "\n\n" + "\n".join(floor_lines)
    runs = sorted({(r["settings"]["rounds"], r["settings"]["seconds"], r["settings"]["floor_steps"])
                   for r in records})  # fmt: skip
    how = "; ".join(f"{n} interleaved rounds × {sec:g} s per side, "
                    + (f"floors over {f} steps" if f else "no floors") for n, sec, f in runs)  # fmt: skip
    return out + f"\n\n_{how}._ " + results.provenance_line(records)


def _merged_rows(records: Sequence[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """One record per (suite, threads) whose rows are those of every record of that suite and
    thread count, oldest first, a row of a newer record replacing the row of the same key (a
    run of some algorithms alone adds or refreshes their rows)."""
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for r in sorted(records, key=lambda x: (x["created"], x["key"])):
        k = (r["settings"]["suite"], r["settings"]["threads"])
        if k not in merged:
            merged[k] = {**r, "figures": {"rows": list(r["figures"]["rows"])}}
            continue
        rows: list[dict[str, Any]] = merged[k]["figures"]["rows"]
        for row in r["figures"]["rows"]:
            at = [i for i, x in enumerate(rows) if x["key"] == row["key"]]
            if at:
                rows[at[0]] = row
            else:
                rows.append(row)
    return merged


def readme_section() -> str:
    """The README's section: :func:`summary_table` of every kept result (rows merged across
    the results of a suite and thread count, see :func:`_merged_rows`)."""
    return summary_table(results.read_results(BENCHMARK, latest=False))


TUTORIAL_ROWS = (("il", "IL"), ("bcq", "BCQ"), ("cql", "CQL"), ("crr", "CRR"))


def tutorial_line(records: Sequence[dict[str, Any]]) -> str:
    """The Atari tutorial's line: ours ÷ Tianshou fused for the discrete rows at the fewest
    threads of the kept results (CQL with our default target rule, Tianshou's in brackets)."""
    by = _merged_rows(records)
    threads = sorted({t for s, t in by if s in ("cartpole", "atari")})
    if not threads:
        return results.provenance_line([])
    t = threads[0]
    parts = []
    used = []
    for suite, name in (("cartpole", "CartPole MLPs"), ("atari", "Atari conv net, batch 32")):
        rec = by.get((suite, t))
        if rec is None:
            continue
        used.append(rec)
        rows = {r["key"].split(":", 1)[1]: r for r in rec["figures"]["rows"]}
        cells = []
        for key, short in TUTORIAL_ROWS:
            row = rows.get(key)
            if row is None:
                continue
            ss = {x["key"]: x for x in row["sides"]}
            if "tianshou-fused" not in ss:
                continue

            def ratio(ours: str, ss: dict[str, Any] = ss) -> float:
                return float(statistics.median(p / o for o, p in zip(ss[ours]["ms"], ss["tianshou-fused"]["ms"], strict=True)))  # fmt: skip

            if "ours-default-target" in ss:
                cells.append(f"{short} {ratio('ours-default-target'):.2f}× ({ratio('ours'):.2f}× "
                             "with Tianshou's double-Q target rule)")  # fmt: skip
            else:
                cells.append(f"{short} {ratio('ours'):.2f}×")
        parts.append(f"{name}: " + ", ".join(cells))
    return (
        f"Speed vs Tianshou 2.0.1 with fused Adam and the same networks ({t} thread, ours ÷ "
        f"Tianshou, medians of per-round ratios; [Benchmarks](../benchmarks.md)): "
        + "; ".join(parts)
        + ". "
        + results.provenance_line(used)
    )


def tutorial_section() -> str:
    """``docs/tutorials/train.md``'s section: :func:`tutorial_line` of the kept results."""
    return tutorial_line(results.read_results(BENCHMARK, latest=False))


# ------------------------------------------------------------------- main


def _measure(
    args: argparse.Namespace, suite: str, make_rows: Callable[[], list[Row]], threads: int,
    d3rlpy: str | None,
) -> dict[str, Any]:  # fmt: skip
    with results.LoadMonitor() as load:
        rows = run_rows(
            make_rows(), builder="benchmarks.train_speed",
            threads=threads, d3rlpy=d3rlpy, rounds=args.rounds, seconds=args.seconds,
            floor_steps=args.floor_steps or None, floor_rounds=args.floor_rounds,
            top=args.profile_top,
        )  # fmt: skip
    lo = load.summary()
    print(
        f"\n## {SUITES[suite]} — torch {torch.__version__}, {threads} thread(s), {args.rounds} "
        f"interleaved rounds × {args.seconds:.1f} s per side; load average {lo['before']} → "
        f"{lo['after']} (max {lo['max']})\n", flush=True,
    )  # fmt: skip
    print_rows(rows, COLUMNS, bool(args.profile_top))
    path = results.write_result(
        BENCHMARK, f"{suite}-{threads}t", settings=settings_of(args, suite, threads),
        figures={"rows": [asdict(r) for r in rows]}, code=CODE, seeds=[args.seed], load=load,
        d3rlpy="2.8.1" if d3rlpy else None,
    )  # fmt: skip
    print(f"\nkept: {path.relative_to(results.REPO)}", flush=True)
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--suite", choices=("all", "continuous", "discrete"), default="all")
    p.add_argument("--algorithms", default=",".join(ROWS), help="continuous suite, comma-separated")
    p.add_argument("--discrete-algorithms", nargs="*", default=list(ROW_KEYS), choices=ROW_KEYS)
    p.add_argument("--only", choices=("cartpole", "atari"), default=None, help="discrete setting")
    p.add_argument("--batch-size", type=int, default=None,
                   help="continuous (default: the speed preset's, 256)")  # fmt: skip
    p.add_argument("--hidden", type=int, nargs="+", default=None,
                   help="continuous (default: the speed preset's, 256 256)")  # fmt: skip
    p.add_argument("--obs-dim", type=int, default=17)
    p.add_argument("--act-dim", type=int, default=6)
    p.add_argument("--buffer-size", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="one run per value")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0, help="per side per round")
    p.add_argument("--floor-steps", type=int, default=30, help="steps profiled per side (0: none)")
    p.add_argument("--floor-rounds", type=int, default=3, help="interleaved profiles per side")
    p.add_argument("--profile-top", type=int, default=0, metavar="K")
    p.add_argument("--d3rlpy-python", default=None,
                   help="d3rlpy 2.8.1's interpreter (default: ~/.cache/tianshou-offline/d3rlpy-venv)")  # fmt: skip
    p.add_argument("--no-d3rlpy", action="store_true", help="skip d3rlpy (else its venv is made)")
    p.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=True,
                   help="also time ours with compile=True (torch.compile of the networks)")  # fmt: skip
    report.add_arguments(p, target=f"every row ≥ {TARGET}× the faster peer", table=True)
    args = p.parse_args(argv)
    args.keys = [k.strip() for k in args.algorithms.split(",") if k.strip()]
    unknown = [k for k in args.keys if k not in ROWS]
    if unknown:
        p.error(f"unknown algorithms {unknown}; choose from {list(ROWS)}")
    if args.table_only or args.readme:
        if args.readme:
            from benchmarks._lib import readme

            readme.write_sections({"train_speed_tutorial": tutorial_section()})
        return report.show_kept(args, BENCHMARK, summary_table, missed_targets, latest=False)
    else:
        d3rlpy = None if args.no_d3rlpy else d3rlpy_python(
            args.d3rlpy_python, create=True, torch_version=torch.__version__)  # fmt: skip
        records = [_measure(args, suite, make, threads, d3rlpy)
                   for threads in args.threads for suite, make in suite_rows(args).items()]  # fmt: skip
    return report.finish(missed_targets(records), args.check)


if __name__ == "__main__":
    raise SystemExit(main())

"""Wall time of ``tianshou-offline evaluate --fqe`` (the README's figure for the command).

Runs the command as a user does (a subprocess; its default Q-network 256×256, batch 256) on
Pendulum-v1 data recorded with ``tianshou-offline record --policy random``, with
``--checkpoints`` policy checkpoints (randomly initialised DeterministicPolicy actors: the
cost of a fit does not depend on what the policy learned), once per ``--threads`` value,
all on the same data and checkpoints. Per checkpoint it keeps the fit's seconds (the
command's ``--json``), per run the command's wall time (start-up, loading and the table
included). One result file per thread count under ``benchmarks/results/evaluate_speed/``;
``--readme`` rewrites the README's section from the kept results (nothing is run).

    python -m benchmarks.evaluate_speed                       # threads 1 and all cores
    python -m benchmarks.evaluate_speed --steps 2000 --threads 1 2
    python -m benchmarks.evaluate_speed --readme
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._lib.readme import write_sections
from benchmarks._lib.results import (
    LoadMonitor,
    file_sha256,
    provenance_line,
    read_results,
    write_result,
)

BENCHMARK = "evaluate_speed"
TASK = "Pendulum-v1"
CODE = (
    "benchmarks/evaluate_speed.py",
    "tianshou_offline/cli/evaluate.py",
    "tianshou_offline/evaluation",
    "tianshou_offline/algorithms/continuous/fqe.py",
    "tianshou_offline/algorithms/continuous/dataset.py",
    "tianshou_offline/algorithms/core.py",
    "tianshou_offline/algorithms/sampling.py",
    "tianshou_offline/algorithms/episodes.py",
)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tianshou_offline.cli", *args]


def _checkpoints(folder: Path, n: int, seed: int) -> list[str]:
    import gymnasium as gym
    import torch

    from tianshou_offline.algorithms import DeterministicActor, DeterministicPolicy
    from tianshou_offline.recording.policies import save_policy_checkpoint

    env = gym.make(TASK)
    obs, act = env.observation_space, env.action_space
    assert isinstance(obs, gym.spaces.Box) and isinstance(act, gym.spaces.Box)
    out = []
    for i in range(n):
        torch.manual_seed(seed + i)
        policy = DeterministicPolicy(
            actor=DeterministicActor(obs.shape[0], act.shape[0], (256, 256)),
            action_space=act,
            observation_space=obs,
        )
        out.append(str(save_policy_checkpoint(folder / f"ckpt{i}.pt", policy)))
    return out


def measure(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pendulum.hdf5"
        subprocess.run(
            _cli("record", "--env", TASK, "--policy", "random", "--episodes", str(args.episodes),
                 "--seed", str(args.seed), "-o", str(data)),
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        ckpts = _checkpoints(Path(tmp), args.checkpoints, args.seed)
        for threads in args.threads:
            out = Path(tmp) / f"fqe_{threads}.json"
            cmd = _cli("evaluate", "--fqe", *ckpts, "--data", str(data), "--steps",
                       str(args.steps), "--threads", str(threads), "--seed", str(args.seed),
                       "--json", str(out))  # fmt: skip
            with LoadMonitor() as load:
                start = time.perf_counter()
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
                wall = time.perf_counter() - start
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return 1
            fits = [c["seconds"] for c in json.loads(out.read_text())["checkpoints"]]
            figures = {
                "command_wall_s": round(wall, 2),
                "fit_s": [round(s, 2) for s in fits],
                "median_fit_s": round(statistics.median(fits), 2),
                "median_s_per_1000_steps": round(1000 * statistics.median(fits) / args.steps, 2),
            }
            settings = {
                "task": TASK,
                "data": f"record --policy random --episodes {args.episodes}",
                "transitions": args.episodes * 200,
                "checkpoints": args.checkpoints,
                "steps": args.steps,
                "threads": threads,
                "q_net": [256, 256],
                "batch_size": 256,
            }
            path = write_result(BENCHMARK, f"threads-{threads}", settings=settings,
                                figures=figures, code=CODE, seeds=[args.seed],
                                data={"pendulum.hdf5": file_sha256(data)}, load=load)  # fmt: skip
            print(f"threads {threads}: {json.dumps(figures)} -> {path}")
    return 0


def readme_section() -> str:
    """The README's table of the kept results."""
    records = sorted(read_results(BENCHMARK), key=lambda r: r["settings"]["threads"])
    lines = [
        "| `--threads` | FQE steps | s per 1,000 steps (median of checkpoints) | "
        "whole command (s) |",
        "|---:|---:|---:|---:|",
    ]
    for r in records:
        s, f = r["settings"], r["figures"]
        lines.append(
            f"| {s['threads']} | {s['steps']:,} × {s['checkpoints']} checkpoints | "
            f"{f['median_s_per_1000_steps']:.1f} | {f['command_wall_s']:.0f} |"
        )
    lines += ["", provenance_line(records)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=10, help="Pendulum episodes (200 steps)")
    parser.add_argument("--checkpoints", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2000, help="FQE steps per checkpoint")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--readme", action="store_true", help="rewrite the README section; run nothing"
    )
    args = parser.parse_args(argv)
    if args.readme:
        changed = write_sections({BENCHMARK: readme_section()})
        print(f"README sections changed: {changed or 'none'}")
        return 0
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())

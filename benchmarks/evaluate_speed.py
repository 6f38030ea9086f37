"""Wall time of ``tianshou-offline evaluate --fqe`` (the README's figure for the command).

Runs the command as a user does (a subprocess, its default Q-network 256×256 and batch 256)
on Pendulum-v1 data of the quickstart's scripted controller, with ``--checkpoints`` policy
checkpoints (randomly initialised DeterministicPolicy actors: the cost of a fit does not
depend on what the policy learned), once per ``--threads`` value. Per checkpoint it records
the fit's seconds (the command's ``--json``), and per run the command's wall time (start-up,
loading and the table included). Writes ``--json`` (default
``benchmarks/results/evaluate_speed.json``) with the settings, versions, commit and the
machine load before and after.

    python benchmarks/evaluate_speed.py
    python benchmarks/evaluate_speed.py --steps 2000 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _tf_free  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
import h5py
import tianshou
import torch
from fqe_rank import write_data

from tianshou_offline import __version__
from tianshou_offline.algorithms import DeterministicActor, DeterministicPolicy
from tianshou_offline.recording.policies import save_policy_checkpoint

HERE = Path(__file__).resolve().parent
TASK = "Pendulum-v1"


def machine() -> dict[str, Any]:
    """Where the run happened: CPU count, load (``uptime``), versions, the code's commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, timeout=30
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=HERE, capture_output=True, text=True, timeout=30,
            ).stdout.strip()
        )  # fmt: skip
    except OSError:
        commit, dirty = "", False
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, timeout=30).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "uptime": uptime,
        "loadavg": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "tianshou": tianshou.__version__,
        "h5py": h5py.__version__,
        "tianshou_offline": __version__,
        "commit": commit,
        "dirty": dirty,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=10, help="Pendulum episodes (200 steps)")
    parser.add_argument("--checkpoints", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2000, help="FQE steps per checkpoint")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "evaluate_speed.json")
    args = parser.parse_args(argv)

    env = gym.make(TASK)
    obs_space, act_space = env.observation_space, env.action_space
    assert isinstance(obs_space, gym.spaces.Box) and isinstance(act_space, gym.spaces.Box)
    before = machine()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pendulum.hdf5"
        write_data(data, args.episodes, 4.0, args.seed)
        ckpts = []
        for i in range(args.checkpoints):
            torch.manual_seed(args.seed + i)
            policy = DeterministicPolicy(
                actor=DeterministicActor(obs_space.shape[0], act_space.shape[0], (256, 256)),
                action_space=act_space,
                observation_space=obs_space,
            )
            ckpts.append(str(save_policy_checkpoint(Path(tmp) / f"ckpt{i}.pt", policy)))
        for threads in args.threads:
            out = Path(tmp) / f"fqe_{threads}.json"
            cmd = [sys.executable, "-m", "tianshou_offline.cli", "evaluate", "--fqe", *ckpts,
                   "--data", str(data), "--steps", str(args.steps), "--threads", str(threads),
                   "--seed", str(args.seed), "--json", str(out)]  # fmt: skip
            start = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
            wall = time.perf_counter() - start
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return 1
            fits = [c["seconds"] for c in json.loads(out.read_text())["checkpoints"]]
            run = {
                "threads": threads,
                "command_wall_s": round(wall, 2),
                "fit_s": [round(s, 2) for s in fits],
                "median_fit_s": round(statistics.median(fits), 2),
                "median_fit_s_per_1000_steps": round(
                    1000 * statistics.median(fits) / args.steps, 2
                ),
            }
            runs.append(run)
            print(json.dumps(run))
    result = {
        "benchmark": "evaluate_speed",
        "command": "tianshou-offline evaluate --fqe CKPT... --data FILE --steps N --threads T",
        "settings": {
            "task": TASK,
            "episodes": args.episodes,
            "transitions": args.episodes * 200,
            "checkpoints": args.checkpoints,
            "steps": args.steps,
            "q_net": [256, 256],
            "batch_size": 256,
            "seed": args.seed,
        },
        "runs": runs,
        "machine_before": before,
        "machine_after": {"uptime": machine()["uptime"], "loadavg": list(os.getloadavg())},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

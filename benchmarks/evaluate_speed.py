"""Wall time of ``tianshou-offline evaluate --fqe`` (the README's figure for the command).

Runs the command as a user does (a subprocess, its default Q-network 256×256 and batch 256)
on Pendulum-v1 data of the quickstart's scripted controller, with ``--checkpoints`` policy
checkpoints (randomly initialised DeterministicPolicy actors: the cost of a fit does not
depend on what the policy learned), once per ``--threads`` value. Per checkpoint it records
the fit's seconds (the command's ``--json``), and per run the command's wall time (start-up,
loading and the table included). Writes a result file under
``benchmarks/results/evaluate_speed/`` (:mod:`benchmarks._lib.results`: settings, versions,
commit, code fingerprint and the machine load during the run).

    python -m benchmarks.evaluate_speed
    python -m benchmarks.evaluate_speed --steps 2000 --threads 1 2
"""

from __future__ import annotations

import tianshou_offline.cli._no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)

# isort: split

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from benchmarks._lib.results import LoadMonitor, file_sha256, write_result
from benchmarks.fqe_rank import write_data
from tianshou_offline.algorithms import DeterministicActor, DeterministicPolicy
from tianshou_offline.recording.policies import save_policy_checkpoint

TASK = "Pendulum-v1"
CODE = (
    "benchmarks/evaluate_speed.py",
    "benchmarks/fqe_rank.py",
    "tianshou_offline/evaluation",
    "tianshou_offline/algorithms",
    "tianshou_offline/cli/evaluate.py",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=10, help="Pendulum episodes (200 steps)")
    parser.add_argument("--checkpoints", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2000, help="FQE steps per checkpoint")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    env = gym.make(TASK)
    obs_space, act_space = env.observation_space, env.action_space
    assert isinstance(obs_space, gym.spaces.Box) and isinstance(act_space, gym.spaces.Box)
    runs: list[dict[str, Any]] = []
    with LoadMonitor() as load, tempfile.TemporaryDirectory() as tmp:
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
        data_hash = file_sha256(data)
    settings = {
        "command": "tianshou-offline evaluate --fqe CKPT... --data FILE --steps N --threads T",
        "task": TASK, "episodes": args.episodes, "transitions": args.episodes * 200,
        "checkpoints": args.checkpoints, "steps": args.steps, "threads": args.threads,
        "q_net": [256, 256], "batch_size": 256,
    }  # fmt: skip
    path = write_result(
        "evaluate_speed", f"pendulum-{args.steps}-steps", settings=settings,
        figures={"runs": runs}, code=CODE, seeds=[args.seed], data={data.name: data_hash},
        load=load,
    )  # fmt: skip
    print(f"kept: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Start time of ``tianshou-offline --help`` and every ``convert``/``export`` ``--help``.

Target (issue 10): under 1 s each with the ``test`` extra (TensorFlow) installed. Reference:
``python -c pass`` (the interpreter's own start), measured interleaved in the same run.

    python -m benchmarks.cli_start [--repeats 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = [
    ["--help"],
    ["convert", "--help"],
    ["convert", "d4rl", "--help"],
    ["convert", "minari", "--help"],
    ["convert", "rl-unplugged-atari", "--help"],
    ["convert", "tfds", "--help"],
    ["convert", "tianshou", "--help"],
    ["export", "minari", "--help"],
]


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    exe = shutil.which("tianshou-offline")
    base = [exe] if exe else [sys.executable, "-m", "tianshou_offline.cli"]
    reference = [sys.executable, "-c", "pass"]
    times: dict[str, list[float]] = {" ".join(c): [] for c in COMMANDS}
    ref: list[float] = []
    for _ in range(args.repeats):  # interleaved: each round runs every command once
        ref.append(_time(reference))
        for c in COMMANDS:
            times[" ".join(c)].append(_time([*base, *c]))
    r = statistics.median(ref)
    print(f"{'command':<42} {'median s':>9} {'÷ python -c pass':>17}  target < 1 s")
    print(f"{'python -c pass':<42} {r:9.3f} {1.0:17.1f}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(
            f"{'tianshou-offline ' + name:<42} {m:9.3f} {m / r:17.1f}  {'ok' if m < 1 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()

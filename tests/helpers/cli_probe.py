"""The command run in a child process that reports its exit code and whether it imported
TensorFlow or Tianshou (``run_probe``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_PROBE = """
import json, sys
from tianshou_offline.cli import main
code = main(sys.argv[1:])
print("\\nPROBE " + json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules,
                                "tianshou": "tianshou" in sys.modules}))
"""


def run_probe(*args: str, env: dict[str, str] | None = None) -> tuple[dict[str, object], str]:
    res = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    line = [x for x in res.stdout.splitlines() if x.startswith("PROBE ")][-1]
    return json.loads(line[len("PROBE ") :]), res.stdout + res.stderr

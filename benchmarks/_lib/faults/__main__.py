"""The child of a sweep: ``python -m benchmarks._lib.faults SPEC.json RESULTS.jsonl`` runs the
trials of ``SPEC.json`` and appends one JSON line per trial to ``RESULTS.jsonl``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks._lib.faults.trials import run_trials

if __name__ == "__main__":
    run_trials(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))

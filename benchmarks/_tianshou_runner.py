"""The tianshou-offline and Tianshou 2.0.1 sides of the speed benchmarks (this environment).

Started by ``train_speed.py``/``train_speed_discrete.py`` as ``python _tianshou_runner.py
--threads N``, one process per side (ours, Tianshou with fused Adam, Tianshou with its default
Adam); serves the protocol of ``_peers.py``. The algorithms are built by the scripts'
``build_side`` from the spec the driver sends.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import Step, main_worker


def build(spec: dict[str, Any]) -> tuple[Step, dict[str, Any]]:
    if spec["suite"] == "continuous":
        import train_speed

        return train_speed.build_side(spec)
    import train_speed_discrete

    return train_speed_discrete.build_side(spec)


if __name__ == "__main__":
    main_worker(build)

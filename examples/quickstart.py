"""Quickstart: record CartPole expert episodes → HDF5 buffer → behaviour cloning → evaluation.

Run: ``python examples/quickstart.py [--workdir DIR]`` (same as ``tianshou-offline quickstart``).
"""

import sys

from tianshou_offline.cli import main

if __name__ == "__main__":
    sys.exit(main(["quickstart", *sys.argv[1:]]))

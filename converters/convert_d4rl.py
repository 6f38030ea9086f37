#!/usr/bin/env python
"""Convert a D4RL dataset (name or HDF5 file) to a tianshou-offline buffer.

Same as ``tianshou-offline convert d4rl``::

    python converters/convert_d4rl.py hopper-medium-v2 -o hopper-medium-v2.hdf5
    python converters/convert_d4rl.py ~/.d4rl/datasets/hopper_medium-v2.hdf5 -o out.hdf5 --qlearning-compat

Needs no d4rl, gym or mujoco. See ``docs/CONVERTERS.md`` for the semantics and options.
"""

from __future__ import annotations

import sys

from tianshou_offline.cli.convert import main_d4rl as main

if __name__ == "__main__":
    sys.exit(main())

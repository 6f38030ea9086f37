#!/usr/bin/env python
"""Convert a Minari dataset (id or local directory) to a tianshou-offline buffer.

Same as ``tianshou-offline convert minari``::

    python converters/convert_minari.py D4RL/door/human-v2 -o door-human.hdf5
    python converters/convert_minari.py D4RL/door/human-v2 -o first100.hdf5 --episodes 0:100
    python converters/convert_minari.py ~/.minari/datasets/my/dataset-v0 -o out.hdf5 --with-infos

Datasets are looked up in ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``);
``--download`` fetches a missing one. Export back with ``tianshou-offline export minari``.
See ``docs/CONVERTERS.md``.
"""

from __future__ import annotations

import sys

from tianshou_offline.cli.convert import main_minari as main

if __name__ == "__main__":
    sys.exit(main())

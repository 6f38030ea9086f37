#!/usr/bin/env python
"""Convert RL Unplugged Atari shards to compact, exact tianshou-offline buffers.

Same flags as Tianshou's ``examples/offline/convert_rl_unplugged_atari.py`` (plus
``--workers``, ``--resume``, ``--overwrite``, ``--download``); no TensorFlow needed::

    python converters/convert_rl_unplugged_atari.py --task Breakout --run-id 1 --shard-id 1 --download
    python converters/convert_rl_unplugged_atari.py --task Pong --shard-id 0-99 --resume \\
        --dataset-dir ~/.rl_unplugged/cache --buffer-dir ~/.rl_unplugged/buffers

Same as ``tianshou-offline convert rl-unplugged-atari``. Load the outputs with
``tianshou_offline.converters.rl_unplugged.load_rl_unplugged``. See ``docs/RL_UNPLUGGED.md``.
"""

from __future__ import annotations

import sys

from tianshou_offline.cli.convert import main_rl_unplugged_atari as main

if __name__ == "__main__":
    sys.exit(main())

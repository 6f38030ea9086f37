"""Keep TensorBoard from importing TensorFlow in the MuJoCo example processes.

As ``examples/atari/_no_tensorflow.py`` (a module of another name: mypy checks both example
folders as one program). Tianshou's logger uses TensorBoard's ``SummaryWriter``; when
TensorFlow happens to be installed, TensorBoard imports it (seconds of start-up, hundreds of
MB, a screenful of TensorFlow's logs) although writing event files does not need it.
TensorBoard's documented switch is the marker module ``tensorboard.compat.notf``: with it
present, TensorBoard uses its built-in TensorFlow stub. Import this module before anything
that imports TensorBoard.
"""

from __future__ import annotations

import sys
import types

sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

"""Keep TensorBoard from importing TensorFlow in the example processes.

Tianshou's logger uses TensorBoard's ``SummaryWriter``; when TensorFlow happens to be
installed, TensorBoard imports it (~0.8 GB of resident memory and seconds of start-up),
although writing event files does not need it. TensorBoard's documented switch is the marker
module ``tensorboard.compat.notf`` (its ``no_tensorflow`` build target): with it present,
TensorBoard uses its built-in TensorFlow stub. Import this module before anything that
imports TensorBoard.
"""

from __future__ import annotations

import sys
import types

sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

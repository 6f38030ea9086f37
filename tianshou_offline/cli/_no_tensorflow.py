"""Keep TensorBoard from importing TensorFlow in processes of the ``tianshou-offline`` command
and the example scripts (``import tianshou_offline.cli`` before anything imports tianshou).

Tianshou's logger imports TensorBoard; when TensorFlow happens to be installed (the ``test``
and ``tfds`` extras), TensorBoard imports it: ~5 s of start-up, ~500 MB of resident memory
and lines of TensorFlow/absl log, although writing event files does not need it.
TensorBoard's documented switch is the marker module ``tensorboard.compat.notf`` (its
``no_tensorflow`` build target): with it present, TensorBoard uses its built-in TensorFlow
stub. Converting RLDS data (``convert tfds``) still imports TensorFlow itself, where it is
needed.
"""

from __future__ import annotations

import sys
import types

sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

"""Imported first by benchmarks that train with Tianshou: TensorBoard (which Tianshou imports)
imports TensorFlow unless its ``notf`` marker module exists — as the CLI and the examples
keep TensorFlow out of their processes (seconds of start time, and gigabytes of memory)."""

from __future__ import annotations

import sys
import types

sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

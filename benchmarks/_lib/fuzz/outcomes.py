"""The outcomes of one entry point on one mutant (:data:`OUTCOMES`) and which of them are failures."""

from __future__ import annotations

OUTCOMES = ("typed", "ok", "untyped", "inconsistent", "timeout", "memory", "crash")
FAILURES = ("untyped", "inconsistent", "timeout", "memory", "crash")

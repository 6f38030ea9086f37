"""The test suite; its layout mirrors the package (``tests/algorithms`` ↔ ``tianshou_offline/algorithms`` …)."""

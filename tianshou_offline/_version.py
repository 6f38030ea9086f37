"""The package version (one place; read by setup.cfg and ``tianshou-offline --version``)."""

__version__ = "0.1.0"

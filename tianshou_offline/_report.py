"""One-line results of command handlers.

Library code does not print (the CLI owns the terminal). The command handlers that the
converter modules register with the CLI report their results with :func:`report`, a log
record of the ``tianshou_offline.report`` logger; :func:`tianshou_offline.cli.run_command`,
through which every command runs, shows that logger's records on stdout while the command
runs. Called from Python, the records go wherever the application's logging sends them.
"""

from __future__ import annotations

import logging

REPORT_LOGGER = logging.getLogger("tianshou_offline.report")


def report(message: str) -> None:
    """Report one line of a command's result (``INFO`` on :data:`REPORT_LOGGER`)."""
    REPORT_LOGGER.info(message)

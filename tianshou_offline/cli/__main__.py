"""``python -m tianshou_offline.cli …`` (same as ``tianshou-offline …``)."""

import sys

from tianshou_offline.cli import main

sys.exit(main())

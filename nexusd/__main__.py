"""``python -m nexusd``: run the daemon, same flags as ``nexus serve``."""

import sys

from nexusd.entry import main

sys.exit(main())

"""``python -m nexusd.discovery [--timeout S] [--json]``: browse mDNS once (see ``command``)."""

import sys

from nexusd.discovery.command import main

sys.exit(main())

"""``python -m nexus_tui [--socket PATH] [--read-only]``"""

import sys

from nexus_tui import main

sys.exit(main())

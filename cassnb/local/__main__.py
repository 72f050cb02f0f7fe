"""``python -m cassnb.local``: start, stop and inspect local Cassandra nodes."""

import sys

from cassnb.local import main

sys.exit(main())

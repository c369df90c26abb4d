"""`python -m stemcat.sim serve ...`."""

import sys

from stemcat.sim.cli import main

sys.exit(main())

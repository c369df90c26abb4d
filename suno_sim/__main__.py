"""`python -m suno_sim serve ...`."""

import sys

from suno_sim.cli import main

sys.exit(main())

"""`python -m detection` is the command line; see detection.cli."""
import sys

from detection.cli import main

sys.exit(main())

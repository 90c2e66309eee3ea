"""`python -m switch` is the `softswitch` command."""

import sys

from switch.cli import main

sys.exit(main())

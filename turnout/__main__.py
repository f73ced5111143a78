"""``python -m turnout``: the same command as the ``turnout`` console script."""

import sys

from turnout.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m fatviz`: the command line."""

import sys

from fatviz.cli import main

if __name__ == "__main__":
    sys.exit(main())

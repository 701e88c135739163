"""`python -m theory_checks NAME [options]` — the same as `covsim check NAME [options]`."""

import sys

from covsim.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["check", *sys.argv[1:]]))

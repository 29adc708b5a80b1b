"""`python -m delegation_machine.server` runs the command line (`serve` by default)."""

from __future__ import annotations

import sys

from delegation_machine.server.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["serve"]))

"""``python -m bench [all|SCENARIO ...] [--rounds N] [--out DIR] [--quick]``."""

from __future__ import annotations

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())

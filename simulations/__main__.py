"""``python -m simulations run ...`` (see simulations/cli.py)."""

from __future__ import annotations

import sys

from simulations.cli import main

if __name__ == "__main__":
    sys.exit(main())

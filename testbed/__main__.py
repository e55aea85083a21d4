"""``python -m testbed``: run the real-network scenario (see :mod:`testbed.scenario`)."""

from __future__ import annotations

import sys

from testbed.scenario import main

if __name__ == "__main__":
    sys.exit(main())

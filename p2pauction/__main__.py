"""``python -m p2pauction``: the same as the ``p2pauction`` console script."""

from __future__ import annotations

from p2pauction.cli import run

if __name__ == "__main__":
    run()

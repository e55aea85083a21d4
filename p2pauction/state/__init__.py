"""See the package docstring in p2pauction/__init__.py and docs/interfaces.md."""

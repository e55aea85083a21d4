"""p2pauction: a peer-to-peer auction network.

Layers, bottom up (see README "Architecture"):

- ``p2pauction.state``  signed events, validation, the ledger state machine, the SQLite store;
- ``p2pauction.gossip`` the sans-IO network protocol and its thin asyncio adapter;
- ``p2pauction.node``   the node that composes them, with the Python API (``AuctionNode``);
- ``p2pauction.cli``    the command line, a thin client of the node's control socket.
"""

__version__ = "0.1.0"

# The embedding API, imported lazily so that `import p2pauction` (e.g. by the CLI's client
# commands) does not pull in asyncio networking it will not use.
__all__ = ["AuctionNode", "__version__"]


def __getattr__(name: str) -> object:
    if name == "AuctionNode":
        from p2pauction.api import AuctionNode

        return AuctionNode
    raise AttributeError(f"module 'p2pauction' has no attribute {name!r}")

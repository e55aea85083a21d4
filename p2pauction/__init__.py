"""p2pauction: a peer-to-peer auction network.

Layers, bottom up (see README "Architecture"):

- ``p2pauction.state``  signed events, validation, the ledger state machine, the SQLite store;
- ``p2pauction.gossip`` the sans-IO network protocol and its thin asyncio adapter;
- ``p2pauction.node``   the node that composes them, with the Python API (``AuctionNode``);
- ``p2pauction.cli``    the command line, a thin client of the node's control socket.
"""

__version__ = "0.1.0"

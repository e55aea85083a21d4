"""The gossip network: a sans-IO protocol core and its asyncio adapter.

One concept per module (the wire protocol itself is in ``docs/protocol.md``):

- ``framing``       length-prefixed JSON frames (size checked before the body is buffered)
- ``messages``      one validated dataclass per message type, every list bounded
- ``handshake``     HELLO/AUTH: keys proven by signing the other side's nonce
- ``link``          connections: framing + handshake + rate limits + bans + liveness (base class)
- ``membership``    addresses and the bounded passive view
- ``dissemination`` Plumtree (eager tree, lazy IHAVE, GRAFT/PRUNE, hop optimisation) or flooding
- ``antientropy``   16-ary prefix fingerprints of event ids and the reconciliation steps
- ``limits``        token buckets, scores and bans, dial backoff
- ``config``        ``GossipConfig``: every timer and limit
- ``actions``       the core's outputs: ``Send``, ``Dial``, ``CloseConn``, ``Accepted``
- ``core``          ``GossipCore``: a node's protocol engine
- ``discovery``     ``DiscoveryCore``: the bootstrap node
- ``transport``     the asyncio TCP adapter that drives either core

Nothing below ``transport`` does I/O, reads a clock or uses global randomness: time is the ``now``
argument and randomness the ``random.Random`` handed in, so the simulator drives the same code.
"""

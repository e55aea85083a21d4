"""The gossip network: a sans-IO protocol core and its asyncio adapter.

One concept per module (the wire protocol itself is in ``docs/protocol.md``):

- ``framing``       length-prefixed JSON frames (size checked before the body is buffered)
- ``messages``      one validated dataclass per message type, every list bounded
- ``noise``         the Noise Protocol Framework (XX, X25519, ChaCha20-Poly1305, SHA-256/BLAKE2s)
- ``secure``        ``SecureSession``: Noise XX bound to node keys, then encrypted frames
- ``entropy``       ``RandBytes`` sources for secrets: os.urandom, or seeded for simulations
- ``link``          connections: framing + secure channel + rate limits + bans + liveness (base class)
- ``eviction``      which inbound peer to evict when a newcomer needs the slot (eclipse resistance)
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
argument, protocol choices come from the ``random.Random`` handed in and secrets from the
``RandBytes`` handed in, so the simulator drives the same code.
"""

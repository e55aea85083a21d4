"""The replicated auction state (SPEC §2): see docs/interfaces.md, "State layer".

- ``money``: canonical money strings <-> Decimal.
- ``identity``: Ed25519 identities, the 0600 key file, (cached) signature verification.
- ``events``: signed events, canonical encoding, ids, the strict decoder.
- ``validation``: the named reasons for rejecting an event.
- ``ledger``: the deterministic state machine (validity from the causal past, pending buffer,
  statuses, late bids, digest, views).
- ``authoring``: local actions checked with friendly errors, then signed.
- ``store``: SQLite and in-memory stores (events, peers, finished-auction analytics).
- ``replica``: a ledger and its store kept in step.

Nothing here does I/O except the stores and the identity key file; time and randomness come in
as arguments.
"""

"""The deterministic simulator: the real node code in virtual time.

``python -m simulations run --nodes 200 --seed 7 --loss 0.1 --partition symmetric:6-16 --crash 0.05
--hostile 2 --report out/`` runs many nodes in one process over an in-memory network and prints a
one-line verdict (and ``out/report.json`` + ``out/coverage.png``). ``--check-determinism`` runs it
twice and compares the trace hashes; every run saves ``replay.json`` and prints the command that
replays it. ``python -m simulations.seeds --count 1000`` runs the acceptance mix over many seeds.

What runs: each simulated node is the project's own ``GossipCore`` over a ``Replica`` on a
``MemoryStore``; the bootstrap is the project's ``DiscoveryCore`` (:mod:`simulations.nodes`).
The simulator only plays the role of the asyncio adapter: it calls ``connection_made`` /
``data_received`` / ``connection_lost`` / ``dial_failed`` / ``tick`` and performs the actions
the core returns. Two pure computations are shared across nodes because that is sound and it is
what makes a thousand nodes fit in one process: one ``SignatureVerifier`` with a cache keyed by
the exact signed bytes, and one decode cache (bytes -> immutable Event; ``--no-decode-cache``
turns it off, and a test shows the trace is identical either way).

Modules, bottom up (imports run one way): :mod:`~simulations.clock` (virtual clock, event queue),
:mod:`~simulations.process` (a simulated process and its connection ends),
:mod:`~simulations.network` (links, latency, loss, duplication, reordering, partitions),
:mod:`~simulations.engine` (the world: driving cores), :mod:`~simulations.nodes` (the real node
parts), :mod:`~simulations.context` (what workloads and hostile authors see of a run),
:mod:`~simulations.faults` (fault plans: partitions, crash/restart, churn, clock skew, hostile
acts), :mod:`~simulations.hostile` (the hostile authors), :mod:`~simulations.workloads`
(reference, random auctions, hot auction), :mod:`~simulations.checker` (safety each step,
liveness after heal), :mod:`~simulations.runner` (one run and its summary),
:mod:`~simulations.report`, :mod:`~simulations.cli`,
:mod:`~simulations.seeds` (the acceptance mix over many seeds), :mod:`~simulations.sweep` (seeds on
any ``concurrent.futures`` executor: a local pool or Dask), :mod:`~simulations.replay` (``replay.json``:
a run's parameters and concrete fault plan), :mod:`~simulations.progress` (stderr progress, the
report's timeline); :mod:`~simulations.standin` is a trivial node used only by the
engine's own unit tests. The real-process test bed is the separate ``testbed`` package.

Determinism: every random choice comes from a ``random.Random`` seeded with a string derived from
the run's seed (string seeds are stable across ``PYTHONHASHSEED``); identities come from seeded
key material; no wall clock, thread or OS randomness touches the simulated path (wall time is
read only to report speed). The trace hash is a SHA-256 over every delivered chunk (virtual
time, source, destination, bytes) and every acceptance (time, node, event id).

Fault model notes: loss and reordering act on whole frames of the gossip protocol (an
unreliable message channel over the encrypted session: a lost frame is still decrypted by the
receiver, to keep the record counters in step, and its message dropped; a reordered one is
delayed in order; duplication is not modelled, see :mod:`~simulations.network`); the handshake
frames are exempt, because on TCP those bytes are retransmitted, and dropping them would only
make honest peers look like protocol violators. Each node's secrets (its Noise keys) come from a
``SeededEntropy`` derived from the run seed, node index and incarnation. ``NetParams(loss_mode="tcp")`` models
loss as retransmission delay with head-of-line blocking instead. Partitions drop frames and time
out dials across the cut; connections across it die by the cores' own liveness timeouts.
"""

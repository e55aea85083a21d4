"""Anti-entropy: a 16-ary prefix summary of accepted event ids and the reconciliation steps.

The summary is a tree over the hex prefixes of event ids. Each bucket (a prefix) has a 64-bit
fingerprint (sum of the ids' last 16 hex digits, mod 2**64) and a count. The root and the buckets
of depth 1..depth-1 are updated incrementally on every accepted event; the leaves (depth
``depth``) are read from a sorted id list, so memory stays proportional to the history.

A round (see docs/protocol.md) is stateless message by message:

1. ``SYNC {r}``: the root (16 hex fingerprint + 8 hex count, fixed width). Equal -> nothing more
   is sent, so an agreeing round costs the same bytes whatever the history size.
2. ``TREE {n}``: the 16 child summaries of buckets that differ. The receiver compares each child:
   equal -> skip; empty on its side -> ``WANTP`` (send me that whole bucket); empty on the other
   side -> serve the bucket; above the leaf depth -> reply with that child's own ``TREE`` node;
   at the leaf depth, or holding at most a few ids here -> ``IDS`` (the id list of the bucket).
3. ``IDS``: the receiver ``WANT``s the ids it lacks and serves the ids the other side lacks.
4. ``WANT``/``WANTP`` -> ``EVENTS`` in store order (causal order), bounded per request.

The cost is proportional to the number of differing buckets times the depth, not to history.
The functions are pure logic: no I/O, no time, deterministic (ids are sorted strings; no set
iteration). :class:`AntiEntropy` is the machine around them: when a round starts and with whom,
and the plan for each message of a round (the core sends the replies and serves the ids).
"""

from __future__ import annotations

import heapq
import random
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from p2pauction.errors import UsageError
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.counters import CoreCounters
from p2pauction.gossip.limits import jittered
from p2pauction.gossip.messages import (
    MAX_IDS, MAX_LEAF_IDS, MAX_LEAVES, MAX_PREFIXES, MAX_TREE_NODES, Ids, Message, Sync, Tree, TreeNode,
    Want, WantPrefix,
)
from p2pauction.state.idindex import BUCKET_DIGITS, MASK64, IdIndex, id_fingerprint

HEX = "0123456789abcdef"
_ZERO_FP = "0" * 16
_FPS_FORMAT = "%016x" * 16   # a tree node's 16 child fingerprints in one formatting call
_ZEROS = (0,) * 16


RECENT_IDS = 4096          # ids a store-backed summary answers for from memory (~0.5 MB)
_fp_of = id_fingerprint   # the prefix uses the first hex digits; the fingerprint the last 16


class PrefixSummary:
    """Incremental fingerprints of an id set by hex prefix.

    Without ``source`` it holds every id itself (a sorted list and an order number each, ~200
    bytes per event). With ``source`` (the store's ``IdIndex``: what a ledger that keeps only a
    working set offers) it holds only the fingerprints above the leaves (4,368 numbers at depth
    4), starts from the store's bucket sums instead of reading every id, and reads leaves,
    membership and store order from the store. Both give the same answers for the same ids."""

    def __init__(self, depth: int = 4, source: IdIndex | None = None) -> None:
        self.depth = depth
        self._ids: list[str] = []          # sorted (without a source)
        self._seq: dict[str, int] = {}     # id -> position in accept (store) order (without a source)
        self._fp: dict[str, int] = {}      # prefix (len 1..depth-1) -> fingerprint
        self._cnt: dict[str, int] = {}
        self._root_fp = 0
        self._count_all = 0
        self._source = source
        # over a store: the ids accepted lately, answered without a store lookup (IHAVEs and the
        # graft timers ask about recent events, several times each)
        self._recent: dict[str, None] = {}
        if source is not None:
            if depth - 1 > BUCKET_DIGITS:
                raise UsageError(f"a store-backed summary needs ae_depth <= {BUCKET_DIGITS + 1}")
            for prefix, (fp, count) in sorted(source.bucket_sums().items()):
                self._count_sum(prefix, fp, count)

    @classmethod
    def of(cls, depth: int, source: IdIndex | None, ids_in_order: Callable[[], Iterable[str]]) -> PrefixSummary:
        """Over the store when there is one (nothing per id in memory), else of every id."""
        if source is not None and depth - 1 <= BUCKET_DIGITS:
            return cls(depth, source)
        summary = cls(depth)
        summary.add_many(ids_in_order())
        return summary

    def __len__(self) -> int:
        return self._count_all

    @property
    def ids_in_memory(self) -> int:
        """How many ids this summary holds itself (0 over a store)."""
        return len(self._seq)

    def __contains__(self, event_id: str) -> bool:
        if self._source is not None:
            return event_id in self._recent or self._source.has_id(event_id)
        return event_id in self._seq

    def add(self, event_id: str) -> bool:
        """Record an accepted id; False when already known (with a source the store is the
        judge of that, and it already holds the id: the caller adds each accepted id once)."""
        if self._source is not None:
            self._count_sum(event_id, _fp_of(event_id), 1)
            recent = self._recent
            recent[event_id] = None
            if len(recent) > RECENT_IDS:
                del recent[next(iter(recent))]
            return True
        if not self._count(event_id):
            return False
        insort(self._ids, event_id)
        return True

    def add_many(self, event_ids: Iterable[str]) -> int:
        """Bulk load (e.g. the history at start): one sort instead of an insertion each."""
        new = [i for i in event_ids if self._count(i)]
        self._ids.extend(new)
        self._ids.sort()
        return len(new)

    def _count(self, event_id: str) -> bool:
        if event_id in self._seq:
            return False
        self._seq[event_id] = len(self._seq)
        self._count_sum(event_id, _fp_of(event_id), 1)
        return True

    def _count_sum(self, key: str, v: int, count: int) -> None:
        """Add ``count`` ids whose fingerprints sum to ``v`` under every prefix of ``key``
        shallower than the leaves (``key`` is an id, or a bucket prefix at least that deep)."""
        self._root_fp = (self._root_fp + v) & MASK64
        self._count_all += count
        fp, cnt = self._fp, self._cnt
        for n in range(1, self.depth):
            p = key[:n]
            fp[p] = (fp.get(p, 0) + v) & MASK64
            cnt[p] = cnt.get(p, 0) + count

    def root(self) -> str:
        """Fixed-width root summary: 16 hex fingerprint + 8 hex count (count mod 2**32)."""
        return f"{self._root_fp:016x}{self._count_all & 0xFFFFFFFF:08x}"

    def ids_in(self, prefix: str) -> list[str]:
        # 'g' sorts after every hex digit, so [prefix, prefix+'g') is exactly the bucket.
        if self._source is not None:
            return self._source.ids_between(prefix, prefix + "g")
        return self._ids[bisect_left(self._ids, prefix):bisect_left(self._ids, prefix + "g")]

    def bucket(self, prefix: str) -> tuple[int, int]:
        """(fingerprint, count) of one bucket."""
        if not prefix:
            return self._root_fp, self._count_all
        if len(prefix) < self.depth:
            return self._fp.get(prefix, 0), self._cnt.get(prefix, 0)
        ids = self.ids_in(prefix)
        return sum(_fp_of(i) for i in ids) & MASK64, len(ids)

    def node(self, prefix: str) -> TreeNode:
        """The 16 child summaries of ``prefix`` (which must be shallower than the leaf depth)."""
        if len(prefix) + 1 < self.depth:
            fp, cnt = self._fp, self._cnt
            children = [prefix + h for h in HEX]
            return TreeNode(prefix, _FPS_FORMAT % tuple(map(fp.get, children, _ZEROS)),
                            tuple(map(cnt.get, children, _ZEROS)))
        sums = [0] * 16
        counts = [0] * 16
        at = len(prefix)
        for i in self.ids_in(prefix):
            k = HEX.index(i[at])
            sums[k] += _fp_of(i)
            counts[k] += 1
        return TreeNode(prefix, _FPS_FORMAT % tuple(s & MASK64 for s in sums), tuple(counts))

    def in_store_order(self, ids: Iterable[str]) -> list[str]:
        """Known ids from ``ids``, sorted by acceptance order (a causal order)."""
        if self._source is not None:
            return self._source.in_store_order(ids)
        seq = self._seq
        return sorted((i for i in ids if i in seq), key=seq.__getitem__)

    def earliest_in(self, prefixes: Iterable[str], limit: int) -> list[str]:
        """The ``limit`` earliest accepted ids under any of ``prefixes``, in acceptance order."""
        if self._source is not None:
            source = self._source
            ids = dict.fromkeys(i for p in prefixes for i in source.earliest_between(p, p + "g", limit))
            return source.in_store_order(ids)[:limit]
        seq = self._seq
        ids = dict.fromkeys(i for p in prefixes for i in self.ids_in(p))   # nested prefixes: each id once
        return heapq.nsmallest(limit, ids, key=seq.__getitem__)


class HeldFilter:
    """A Bloom filter of event ids a WANTA asker already holds (its pending events), so the
    answer's walk back stops at them instead of sending them again. Event ids are uniform hashes:
    the K bit positions are slices of the id itself, nothing is hashed. A false positive only
    leaves an event out; the asker then finds it missing and asks for it in a later round."""

    K = 3
    BITS_PER_ID = 10       # about 1.7 % false positives with K = 3

    def __init__(self, bits: bytes | bytearray) -> None:
        self._bits = bytearray(bits)
        self._m = len(bits) * 8

    @classmethod
    def of(cls, ids: list[str], max_hex: int) -> HeldFilter:
        if not ids:
            return cls(b"")
        m = 64
        while m < cls.BITS_PER_ID * len(ids) and m < max_hex * 4:
            m *= 2
        f = cls(bytes(m // 8))
        for i in ids:
            for pos in f._positions(i):
                f._bits[pos >> 3] |= 1 << (pos & 7)
        return f

    @classmethod
    def from_hex(cls, text: str) -> HeldFilter:
        return cls(bytes.fromhex(text))

    def to_hex(self) -> str:
        return self._bits.hex()

    def _positions(self, event_id: str) -> list[int]:
        return [int(event_id[8 * k:8 * k + 8], 16) % self._m for k in range(self.K)]

    def __contains__(self, event_id: str) -> bool:
        if not self._m:
            return False
        bits = self._bits
        return all(bits[p >> 3] >> (p & 7) & 1 for p in self._positions(event_id))


@dataclass
class Plan:
    """What to do after handling one anti-entropy message."""

    replies: list[Message] = field(default_factory=list)
    serve: list[str] = field(default_factory=list)  # ids to send as EVENTS (any order; caller sorts)


def _chunks(items: list, size: int) -> Iterable[list]:  # type: ignore[type-arg]
    for i in range(0, len(items), size):
        yield items[i:i + size]


IDS_PER_MESSAGE = 4096  # keeps an IDS frame near 300 KB, well under the frame limit


def _leaf_chunks(leaves: list[tuple[str, tuple[str, ...]]]) -> Iterable[list[tuple[str, tuple[str, ...]]]]:
    chunk: list[tuple[str, tuple[str, ...]]] = []
    size = 0
    for leaf in leaves:
        if chunk and (len(chunk) >= MAX_LEAVES or size + len(leaf[1]) > IDS_PER_MESSAGE):
            yield chunk
            chunk, size = [], 0
        chunk.append(leaf)
        size += len(leaf[1])
    if chunk:
        yield chunk


def on_sync(summary: PrefixSummary, root: str) -> Plan:
    if root == summary.root():
        return Plan()
    return Plan(replies=[Tree(nodes=(summary.node(""),))])


def on_tree(summary: PrefixSummary, nodes: Iterable[TreeNode], *, expand_max: int,
            serve_max: int, ids_max: int = 0, start: int = 0) -> Plan:
    """Compare the other side's child summaries with ours; descend only into differing ones.

    A differing bucket holding at most ``ids_max`` ids on our side is answered with its id list
    (``IDS``) at once instead of its subtree: up to 8 ids cost the bytes of one or two tree nodes
    and save the round trips (and the tree nodes) of the levels below.

    Over ``expand_max`` differing buckets, a window of them beginning at ``start`` (modulo their
    number; the caller draws it at random) is handled: always the lowest prefixes would stall
    when those differ only by events the asker holds as pending, however many rounds run."""
    differing: list[tuple[str, int, int]] = []  # (child prefix, their count, our count)
    for node in nodes:
        if len(node.prefix) >= summary.depth:
            continue  # a peer with a deeper tree: ignore rather than trust it
        mine = summary.node(node.prefix)
        for k in range(16):
            a = 16 * k
            if node.counts[k] != mine.counts[k] or node.fps[a:a + 16] != mine.fps[a:a + 16]:
                differing.append((node.prefix + HEX[k], node.counts[k], mine.counts[k]))
    if len(differing) > expand_max:
        at = start % len(differing)
        differing = (differing[at:] + differing[:at])[:expand_max]
    expand: list[TreeNode] = []
    leaves: list[tuple[str, tuple[str, ...]]] = []
    wantp: list[str] = []
    serve: list[str] = []
    for child, theirs, ours in differing:
        if ours == 0:
            wantp.append(child)
        elif theirs == 0:
            if len(serve) < serve_max:
                serve.extend(summary.ids_in(child)[:serve_max - len(serve)])
        elif len(child) < summary.depth and ours > ids_max:
            expand.append(summary.node(child))
        else:
            leaves.append((child, tuple(summary.ids_in(child)[:MAX_LEAF_IDS])))
    plan = Plan(serve=serve)
    plan.replies.extend(Tree(nodes=tuple(c)) for c in _chunks(expand, MAX_TREE_NODES))
    plan.replies.extend(Ids(leaves=tuple(c)) for c in _leaf_chunks(leaves))
    plan.replies.extend(WantPrefix(prefixes=tuple(c)) for c in _chunks(wantp, MAX_PREFIXES))
    return plan


def on_ids(summary: PrefixSummary, leaves: Iterable[tuple[str, tuple[str, ...]]], *,
           serve_max: int, known: Callable[[str], bool] | None = None) -> Plan:
    """Leaf id lists from the other side: want what we lack, serve what they lack.

    ``known`` (default: in the summary) also counts events we hold but have not accepted yet
    (the ledger's pending buffer), which it is useless to ask for again."""
    have_it = known or summary.__contains__
    want: list[str] = []
    serve: list[str] = []
    for prefix, theirs in leaves:
        if len(prefix) > summary.depth:
            continue
        want.extend(i for i in theirs if i.startswith(prefix) and not have_it(i))
        if len(serve) < serve_max:
            have = dict.fromkeys(theirs)
            serve.extend(i for i in summary.ids_in(prefix) if i not in have)
    plan = Plan(serve=serve[:serve_max])
    plan.replies.extend(Want(ids=tuple(c)) for c in _chunks(want, MAX_IDS))
    return plan


def on_wantp(summary: PrefixSummary, prefixes: Iterable[str], *, serve_max: int) -> Plan:
    """Whole buckets the other side lacks: serve the earliest ``serve_max`` of them."""
    return Plan(serve=summary.earliest_in(dict.fromkeys(prefixes), serve_max))


class AntiEntropy:
    """Rounds of reconciliation: every ``ae_interval`` (jittered) a SYNC to one random peer,
    sooner (``ae_followup``) when a round found something missing or the first peer arrived."""

    def __init__(self, config: GossipConfig, summary: PrefixSummary, rng: random.Random,
                 counters: CoreCounters, *, next_round: float,
                 opener: Callable[[str, float], Message] | None = None) -> None:
        """``opener(peer, now)``: the message that opens a round instead of SYNC (anti-entropy
        v2's RSYNC); the timer and the choice of peer are the same."""
        self.cfg = config
        self.opener = opener
        self.summary = summary
        self.rng = rng
        self.ev = counters
        self._next_round = next_round

    def reconcile_soon(self, now: float) -> None:
        """Start the next round within ``ae_followup`` instead of a whole interval."""
        if self.cfg.anti_entropy:
            self._next_round = min(self._next_round, now + self.cfg.ae_followup)

    def tick(self, now: float, peers: Iterable[str]) -> list[tuple[str, Message]]:
        """When due, the SYNC (or the opener's message) that opens a round with one random peer."""
        if now < self._next_round:
            return []
        self._next_round = now + jittered(self.cfg.ae_interval, self.cfg.ae_jitter, self.rng)
        keys = list(peers)
        if not self.cfg.anti_entropy or not keys:
            return []
        self.ev.ae_rounds += 1
        key = self.rng.choice(keys)
        if self.opener is not None:
            return [(key, self.opener(key, now))]
        return [(key, Sync(r=self.summary.root()))]

    def on_sync(self, msg: Sync) -> Plan:
        return on_sync(self.summary, msg.r)

    def on_tree(self, msg: Tree) -> Plan:
        cfg = self.cfg
        return on_tree(self.summary, msg.nodes, expand_max=cfg.ae_expand_max, serve_max=cfg.ae_serve_max,
                       ids_max=cfg.ae_ids_max, start=self.rng.randrange(1 << 30))

    def on_ids(self, msg: Ids, known: Callable[[str], bool]) -> Plan:
        """``known``: held, or already on its way (no WANT for it)."""
        return on_ids(self.summary, msg.leaves, serve_max=self.cfg.ae_serve_max, known=known)

    def on_wantp(self, msg: WantPrefix) -> Plan:
        return on_wantp(self.summary, msg.prefixes, serve_max=self.cfg.ae_serve_max)

"""``p2pauction check``: re-validate a store from its raw events and compare with what it saved.

A node persists, with every commit, the ledger's derived state (digest, accepted count, and per
auction: status, leading bid, winner, heads, bid count, closes), the analytics rows of its
finished auctions, and two summaries of them: the anti-entropy bucket sums of the stored ids and
the stats rollups of the finished rows. This check rebuilds all of it from the stored events alone, verifying every
signature again, in a fresh ledger (so nothing the node computed is trusted), and lists every
difference. It only reads the store; it can run while the node runs (SQLite WAL readers see the
last committed state), but a node committing meanwhile may make it report a spurious difference:
stop the node for a verdict that counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from p2pauction.jsontypes import JSONObject
from p2pauction.state.ledger import Ledger, OutcomeKind, Status
from p2pauction.state.store import AuctionState, SqliteStore, finished_row

MAX_LISTED = 20   # differences listed one by one (the count covers them all)


@dataclass(slots=True)
class CheckReport:
    """What a check found; ``ok`` when the saved state equals the re-validated one."""

    events: int = 0
    accepted: int = 0
    auctions: int = 0
    digest: str = ""
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, problem: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(problem)

    def to_json(self) -> JSONObject:
        return {"ok": self.ok, "events": self.events, "accepted": self.accepted, "auctions": self.auctions,
                "digest": self.digest, "problem_count": self.problem_count, "problems": list(self.problems)}

    def render(self) -> str:
        head = (f"{'ok' if self.ok else 'MISMATCH'}: {self.events} stored events, {self.accepted} valid, "
                f"{self.auctions} auctions, digest {self.digest[:16]}...")
        if self.ok:
            return head + "; the saved derived state equals a full re-validation"
        more = self.problem_count - len(self.problems)
        lines = [head + f"; {self.problem_count} difference(s):", *("  " + p for p in self.problems)]
        if more:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)


def check_store(store: SqliteStore, net: str) -> CheckReport:
    """Re-validate every stored event (signatures included) and compare with the saved state."""
    report = CheckReport()
    ledger = Ledger(net)
    for raw in store.iter_raw():
        report.events += 1
        outcome = ledger.receive_raw(raw)
        if outcome.kind is not OutcomeKind.ACCEPTED and outcome.kind is not OutcomeKind.DUPLICATE:
            report.add(f"stored event {outcome.event_id or '(undecodable)'} is {outcome.kind.value}"
                       + (f" ({outcome.reason.value})" if outcome.reason else ""))
    report.accepted = ledger.counters.accepted
    report.digest = f"{ledger.digest:064x}"
    views = ledger.auctions()
    report.auctions = len(views)
    saved = store.load_derived()
    if saved is None:
        report.add("no saved digest (a store written before the derived state was kept: "
                   "start the node once to write it)")
    else:
        digest, accepted = saved
        if digest != ledger.digest:
            report.add(f"saved digest {digest:064x} differs from the re-validated {report.digest}")
        if accepted != ledger.counters.accepted:
            report.add(f"saved accepted count {accepted} differs from the re-validated {ledger.counters.accepted}")
    expected = {v.id: AuctionState.of(v, ledger.heads(v.id)) for v in views}
    _compare_auctions(report, expected, store.auction_states())
    # what a restart reads back instead of replaying: the status counts and the name claims
    counts = {k: v for k, v in store.status_counts().items() if v}
    if counts != {k: v for k, v in ledger.status_counts().items() if v}:
        report.add(f"saved status counts {counts} differ from the re-validated {ledger.status_counts()}")
    claims = {author: ledger.claim_of(author) for author in ledger.claimants()}
    for author, lamport, event_id, name in store.stored_claims():
        if claims.pop(author, None) != (lamport, event_id, name):
            report.add(f"saved name claim of {author[:16]}... ({name!r}) differs from the re-validated one")
    for author in sorted(claims):
        report.add(f"no saved name claim of {author[:16]}...")
    _compare_finished(report, {v.id: finished_row(v) for v in views if v.status is not Status.OPEN},
                      store.history(None, None))
    # what anti-entropy and `history --stats` read instead of every id and every finished row
    for problem in store.index_problems():
        report.add(problem)
    return report


def _compare_auctions(report: CheckReport, expected: dict[str, AuctionState],
                      saved: Iterable[AuctionState]) -> None:
    seen: set[str] = set()
    for state in saved:
        seen.add(state.auction)
        want = expected.get(state.auction)
        if want is None:
            report.add(f"auction {state.auction}: saved state for an auction no stored event opens")
        elif want != state:
            report.add(f"auction {state.auction}: saved {_diff(state, want)}")
    for aid in sorted(set(expected) - seen):
        report.add(f"auction {aid}: no saved state")


def _diff(saved: AuctionState, want: AuctionState) -> str:
    parts = [f"{name}={getattr(saved, name)!r}, re-validated {getattr(want, name)!r}"
             for name in AuctionState.__slots__ if getattr(saved, name) != getattr(want, name)]
    return "; ".join(parts)


def _compare_finished(report: CheckReport, expected: dict[str, dict[str, object]],
                      rows: Iterable[dict[str, object]]) -> None:
    seen: set[str] = set()
    for row in rows:
        aid = str(row["auction"])
        seen.add(aid)
        want = expected.get(aid)
        if want is None:
            report.add(f"history row for {aid}, which is not finished")
        elif {k: want[k] for k in row} != row:
            fields = sorted(k for k in row if want[k] != row[k])
            report.add(f"history row for {aid} differs in {', '.join(fields)}")
    for aid in sorted(set(expected) - seen):
        report.add(f"finished auction {aid} has no history row")

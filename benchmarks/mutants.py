"""Mutation check of the gossip protocol rules: is every rule pinned by a test?

``python benchmarks/mutants.py`` applies each mutant below (one small edit of one rule) to a
temporary copy of the tree, never to the working tree, runs the tests named for it there and
prints a table: mutant, caught or survived, and by which test. It exits non-zero when a listed
mutant survives, when a snippet is no longer found (the code moved: update the mutant), or when
the named tests already fail on the unmutated copy (a baseline failure would fake a catch).

Options: ``--only NAME`` (repeatable; substring of a mutant name), ``--against PATH`` (repeatable:
run these test files or node ids instead of the named tests, e.g. to see which rules the older
test files pin), ``--list`` (print the mutants and exit), ``--timeout S`` (per pytest run).

A mutant is ``(file, exact original snippet, replacement, description, tests expected to catch
it)``. The snippet must occur exactly once in the file; the mutants are written against today's
code, so when someone refactors a rule, the script says "snippet not found (update the mutant)"
for it instead of crashing, and the table still shows the rest.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What a test run needs: the package, the simulator (some tests import it), the tests and the
# pytest configuration.
COPIED_DIRS = ("p2pauction", "simulations", "tests")
COPIED_FILES = ("setup.cfg", "pyproject.toml")
RULES = "tests/test_gossip_rules.py"


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    file: str            # relative to the repository root
    original: str        # exact snippet, must occur once
    replacement: str
    description: str
    tests: tuple[str, ...]  # pytest node ids expected to catch it


def rule(name: str) -> str:
    return f"{RULES}::{name}"


GOSSIP = "p2pauction/gossip"
LINK, CORE, PLUM, AE, DISC, MEMB, SERVE = (
    f"{GOSSIP}/link.py", f"{GOSSIP}/core.py", f"{GOSSIP}/dissemination.py", f"{GOSSIP}/antientropy.py",
    f"{GOSSIP}/discovery.py", f"{GOSSIP}/membership.py", f"{GOSSIP}/serving.py")

MUTANTS: tuple[Mutant, ...] = (
    # --- the three of issue 13 -------------------------------------------------------------------
    Mutant("duplicate-tie-flipped", LINK,
           "dialer_old == min(self.key, key)", "dialer_old == max(self.key, key)",
           "crossed dials keep the link dialed by the LARGER key",
           (rule("test_crossed_dials_keep_the_link_dialed_by_the_smaller_key"),)),
    Mutant("duplicate-tie-inverted", LINK,
           "if dialer_old != dialer_new and dialer_old == min(self.key, key):",
           "if not (dialer_old != dialer_new and dialer_old == min(self.key, key)):",
           "a duplicate closes the link the rule says to keep (and keeps the other)",
           (rule("test_crossed_dials_keep_the_link_dialed_by_the_smaller_key"),
            rule("test_a_reconnect_replaces_the_old_link"))),
    Mutant("idle-ping-removed", LINK,
           "                self.send(link, Ping(n=self._pings_sent))",
           "                pass",
           "no PING on a link idle for ping_after",
           (rule("test_idle_link_gets_one_ping_after_ping_after"),
            rule("test_idle_but_healthy_link_outlives_dead_after"))),
    Mutant("ae-followup-removed", CORE,
           "        if new:\n"
           "            # Something was missing: reconcile again soon instead of waiting a whole interval.\n"
           "            self.antientropy.reconcile_soon(now)",
           "        pass",
           "no follow-up anti-entropy round after a round that brought new events",
           (rule("test_a_round_that_brought_events_is_followed_up_soon"),)),
    # --- links: handshake, liveness, duplicates, errors ------------------------------------------
    Mutant("receipt-is-not-life", LINK,
           "        link.last_recv = now\n", "",
           "frames received do not count as life (every link dies after dead_after)",
           (rule("test_idle_but_healthy_link_outlives_dead_after"),
            rule("test_answered_ping_keeps_a_link_alive_and_the_next_idle_period_pings_again"))),
    Mutant("duplicate-reconnect-keeps-old", LINK,
           "if dialer_old != dialer_new and dialer_old == min(self.key, key):",
           "if dialer_old == min(self.key, key):",
           "a reconnect (same side dialed both) keeps the OLD link",
           (rule("test_a_reconnect_replaces_the_old_link"),)),
    Mutant("duplicate-keeps-both", LINK,
           '            self.close(existing, "duplicate connection (replaced)", now)\n',
           "",
           "a second link to the same key does not close the first",
           (rule("test_a_reconnect_replaces_the_old_link"),)),
    Mutant("handshake-timeout-removed", LINK,
           "if now - link.created >= self.cfg.handshake_timeout:", "if False:",
           "a connection that never authenticates stays open",
           ("tests/test_gossip_handshake.py::test_handshake_timeout",)),
    Mutant("dead-link-kept", LINK,
           "if idle >= self.cfg.dead_after:", "if False:",
           "a link silent for dead_after is not closed",
           (rule("test_silent_link_is_closed_after_dead_after"),)),
    Mutant("ping-every-tick", LINK,
           "elif idle >= self.cfg.ping_after and not link.ping_out:", "elif idle >= self.cfg.ping_after:",
           "an idle link is pinged on every housekeeping tick, not once",
           (rule("test_idle_link_gets_one_ping_after_ping_after"),)),
    Mutant("ping-flag-never-reset", LINK,
           "        link.ping_out = False\n", "",
           "after an answered PING, the next idle period gets no PING",
           (rule("test_answered_ping_keeps_a_link_alive_and_the_next_idle_period_pings_again"),
            rule("test_idle_but_healthy_link_outlives_dead_after"))),
    Mutant("pong-not-sent", LINK,
           "            self.send(link, Pong(n=msg.n))", "            pass",
           "PING is not answered",
           (rule("test_ping_is_answered_with_pong_of_the_same_n"),)),
    Mutant("peer-error-ignored", LINK,
           '            self.close(link, f"peer reported: {msg.reason}", now, send_error=False)\n            return',
           "            return",
           "an ERROR frame from the peer does not close the link",
           (rule("test_error_frame_from_the_peer_closes_the_link"),)),
    Mutant("undecryptable-blames-key", LINK,
           'self.close(link, f"undecryptable frame: {exc}", now, penalty=self.cfg.penalty_violation,\n'
           '                    blame_key=False)',
           'self.close(link, f"undecryptable frame: {exc}", now, penalty=self.cfg.penalty_violation)',
           "bytes that fail to decrypt count against the key (a relay can get an honest key banned)",
           ("tests/test_gossip_channel.py::test_a_relay_between_two_honest_nodes_gains_nothing_and_gets_nobody_banned",)),
    Mutant("inbound-takes-outbound-slots", MEMB,
           "self._inbound_share = config.max_degree - self._outbound_min",
           "self._inbound_share = config.max_degree",
           "inbound peers may fill the slots kept for links the node dialed",
           (rule("test_inbound_peers_never_take_the_outbound_slots"),)),
    Mutant("banned-ip-accepted", LINK,
           'if self.scores.is_banned("ip:" + link.ip, now):', "if False:",
           "a connection from a banned IP is not refused at once",
           (rule("test_banned_ip_is_refused_before_the_handshake"),)),
    Mutant("banned-key-accepted", LINK,
           'if self.scores.is_banned("key:" + key, now):', "if False:",
           "a banned key may handshake again (from another IP)",
           ("tests/test_gossip_core.py::test_forged_events_get_the_peer_banned_and_are_never_accepted",)),
    Mutant("frame-rate-limit-off", LINK,
           "            if not link.frames.take(1, now):\n                self._rate_limited(link, \"frames\", now)\n"
           "                return\n            self._handle_message",
           "            if False:\n                self._rate_limited(link, \"frames\", now)\n"
           "                return\n            self._handle_message",
           "no per-connection frame rate limit",
           ("tests/test_gossip_limits.py::test_frame_rate_limit_closes_and_penalises",)),
    Mutant("byte-rate-limit-off", LINK,
           "if not link.bytes.take(len(data), now):", "if False:",
           "no per-connection byte rate limit",
           ("tests/test_gossip_limits.py::test_byte_rate_limit",)),
    Mutant("half-open-not-evicted", LINK,
           "if self._n_handshaking > self._max_handshaking and not self._evict_half_open(link, now):",
           "if self._n_handshaking > self._max_handshaking:",
           "over the handshake cap the newcomer is refused instead of the oldest half-open evicted",
           ("tests/test_gossip_limits.py::test_total_inbound_and_handshake_caps",)),
    Mutant("ban-threshold-off-by-one", f"{GOSSIP}/limits.py",
           "if value <= -self.threshold:", "if value < -self.threshold:",
           "a ban needs strictly more than the threshold",
           ("tests/test_gossip_core.py::test_forged_events_get_the_peer_banned_and_are_never_accepted",)),
    Mutant("invalid-event-unpunished", CORE,
           'self.links.penalise(link, self.cfg.penalty_invalid_event, f"invalid event ({reason})", now)', "pass",
           "a peer sending invalid events loses no score",
           ("tests/test_gossip_core.py::test_forged_events_get_the_peer_banned_and_are_never_accepted",)),
    # --- dissemination (Plumtree) as seen through the core ---------------------------------------
    Mutant("prune-on-duplicate-removed", CORE,
           '            if via == "push":\n                self._send_to(self.plumtree.on_duplicate(link.key, now))',
           "            pass",
           "a duplicate EVENT is not answered with PRUNE",
           (rule("test_duplicate_event_is_answered_with_one_prune"),)),
    Mutant("prune-ignored", CORE,
           "        self.plumtree.on_prune(link.key)", "        pass",
           "a PRUNEd node keeps pushing full events to the pruner",
           (rule("test_pruned_peer_gets_ihave_not_events_and_graft_restores_push"),)),
    Mutant("graft-not-eager", PLUM,
           '        self.counters.graft_recv += 1\n        self._make_eager(sender)',
           '        self.counters.graft_recv += 1',
           "a GRAFT does not make its sender eager again",
           (rule("test_pruned_peer_gets_ihave_not_events_and_graft_restores_push"),)),
    Mutant("graft-not-served", CORE,
           '                self.ev.graft_served += 1\n                self.links.send(link, EventMsg(',
           '                self.ev.graft_served += 1\n                (link, EventMsg(',
           "the events a GRAFT asks for are not sent",
           (rule("test_pruned_peer_gets_ihave_not_events_and_graft_restores_push"),)),
    Mutant("graft-served-hops-unknown", CORE,
           "h=min(self.plumtree.hops_of(event_id) + 1, MAX_HOPS)", "h=MAX_HOPS",
           "events served for a GRAFT carry 'unknown' hops instead of our copy's + 1",
           (rule("test_pruned_peer_gets_ihave_not_events_and_graft_restores_push"),)),
    Mutant("ihave-hops-unknown", PLUM,
           "                self._enqueue(k, event_id, hops, now)",
           "                self._enqueue(k, event_id, UNKNOWN_HOPS, now)",
           "IHAVE does not carry the announcer's hop count (the optimisation is blind)",
           (rule("test_pruned_peer_gets_ihave_not_events_and_graft_restores_push"),)),
    Mutant("optimize-threshold-off-by-one", PLUM,
           "if tally[0] < threshold * tally[1]:", "if tally[0] <= threshold * tally[1]:",
           "a gain of exactly optimize_threshold hops does not re-root the tree",
           (rule("test_tree_reroots_only_for_a_gain_of_the_threshold"),)),
    Mutant("graft-to-gone-announcer", PLUM,
           "            while announcers and announcers[0] not in self.eager and announcers[0] not in self.lazy:\n"
           "                announcers.pop(0)  # disconnected since it announced\n",
           "",
           "the GRAFT goes to an announcer that disconnected (lost), the live one waits a retry",
           (rule("test_graft_skips_an_announcer_that_disconnected"),)),
    Mutant("repaired-hops-shown", CORE,
           'shown = -1 if via != "push" or hops >= MAX_HOPS else hops', "shown = hops",
           "an event repaired by anti-entropy reports a hop count (1024) instead of unknown (-1)",
           (rule("test_small_repair_is_pushed_on_and_a_catch_up_only_announced"),)),
    Mutant("released-events-dropped", CORE,
           "            for ev in outcome.accepted:\n                if self._held is not None:",
           "            for ev in outcome.accepted[:1]:\n                if self._held is not None:",
           "events released from the pending buffer are not recorded nor passed on",
           (rule("test_a_pending_event_is_forwarded_only_once_released"),)),
    Mutant("forward-to-sender", PLUM,
           "out: Out = [(k, msg) for k in self.eager if k != exclude]",
           "out: Out = [(k, msg) for k in self.eager]",
           "an event is pushed back to the peer it came from",
           (rule("test_event_is_pushed_to_eager_peers_but_not_back_to_its_sender"),)),
    Mutant("first-sender-not-eager", PLUM,
           '        if sender is not None and self.mode == "plumtree":\n            self._make_eager(sender)\n',
           '        if sender is not None and self.mode == "plumtree":\n',
           "the peer that gave us an event's first copy is not made eager",
           (rule("test_first_copy_from_a_lazy_peer_makes_it_eager_again"),)),
    Mutant("ihave-not-batched", PLUM,
           "batch = max(1, min(self.cfg.ihave_batch, MAX_IDS))", "batch = 1",
           "every IHAVE carries one id",
           (rule("test_ihave_ids_are_batched_per_interval"),)),
    Mutant("ihave-sent-at-once", PLUM,
           "            self._flush_at = now + self.cfg.ihave_interval", "            self._flush_at = now",
           "IHAVEs are not held back for ihave_interval",
           ("tests/test_gossip_dissemination.py::test_new_event_goes_eager_to_all_but_sender_and_lazy_by_ihave",
            rule("test_ihave_ids_are_batched_per_interval"))),
    Mutant("graft-timer-removed", PLUM,
           "                self._push_timer(now + self.cfg.graft_timeout, event_id)", "                pass",
           "an IHAVE for a missing id never leads to a GRAFT",
           (rule("test_missing_ihave_id_is_grafted_after_the_timeout_not_before"),)),
    Mutant("graft-immediately", PLUM,
           "self._push_timer(now + self.cfg.graft_timeout, event_id)", "self._push_timer(now, event_id)",
           "a missing IHAVE id is grafted at once (no graft_timeout wait for the push)",
           (rule("test_missing_ihave_id_is_grafted_after_the_timeout_not_before"),)),
    Mutant("graft-for-known-id", PLUM,
           "            if known(event_id):\n                del self._missing[event_id]\n                continue",
           "            pass",
           "a GRAFT is sent for an id that arrived meanwhile (parked as pending)",
           (rule("test_pending_event_is_neither_wanted_nor_grafted_again"),
            rule("test_no_graft_when_the_event_arrives_before_the_timeout"))),
    Mutant("optimize-no-cooldown", PLUM,
           "                        self._optimize_after = now + self.cfg.optimize_cooldown", "                        pass",
           "the tree may re-root on every IHAVE (no damping)",
           (rule("test_tree_reroots_at_most_once_per_cooldown"),)),
    # --- dissemination rules of issue 13 (shallow, stable tree; no redundant control) -------------
    Mutant("ihave-to-announcer", PLUM,
           "q = [(i, h) for i, h in queued if key not in self._heard_from.get(i, ())]", "q = queued",
           "an IHAVE goes to a peer that announced the same id to us",
           (rule("test_no_ihave_to_a_peer_that_announced_the_id_to_us"),)),
    Mutant("want-while-grafting", CORE,
           "return self.known(event_id) or self.plumtree.fetching(event_id, now)",
           "return self.known(event_id)",
           "anti-entropy WANTs an id Plumtree is already fetching (announced or GRAFTed)",
           (rule("test_an_id_plumtree_is_fetching_is_not_wanted_by_anti_entropy"),)),
    Mutant("graft-answer-not-awaited", PLUM,
           "                self._grafted[event_id] = now + self.cfg.graft_retry", "                pass",
           "an id just GRAFTed is WANTed by anti-entropy as well",
           (rule("test_an_id_plumtree_is_fetching_is_not_wanted_by_anti_entropy"),)),
    Mutant("new-links-eager", PLUM,
           'if self._tree_formed and self.eager and self.mode == "plumtree" and self.cfg.lazy_new_links:',
           "if False:",
           "a link added once the tree formed starts eager (closes a cycle: PRUNE/GRAFT churn)",
           (rule("test_a_link_added_once_the_tree_formed_starts_lazy"),)),
    Mutant("new-links-lazy-always", PLUM,
           'if self._tree_formed and self.eager and self.mode == "plumtree" and self.cfg.lazy_new_links:',
           'if self._tree_formed and self.mode == "plumtree" and self.cfg.lazy_new_links:',
           "a link added while we have no eager peer starts lazy (nothing is pushed to the node)",
           (rule("test_a_link_added_while_there_is_no_eager_peer_starts_eager"),)),
    Mutant("prune-protect-removed", PLUM,
           'now - self._first_from.get(sender, float("-inf")) < self.cfg.prune_protect', "False",
           "a peer that just gave us a first copy is PRUNEd for a duplicate (concurrent events cut the tree)",
           (rule("test_a_peer_that_gave_us_a_first_copy_is_not_pruned_within_prune_protect"),)),
    Mutant("tree-repair-removed", PLUM,
           "                    self._repair_tree(announcers, grafts)", "                    pass",
           "tree_repair on: an announced event that came by anti-entropy no longer GRAFTs its announcer",
           ("tests/test_gossip_dissemination.py::test_announced_event_that_came_by_another_route_still_repairs_the_tree",)),
    Mutant("parent-loss-regraft-removed", PLUM,
           "            self._regraft = True\n", "            pass\n",
           "tree_repair on: losing our latest parent no longer GRAFTs another peer at once",
           ("tests/test_gossip_dissemination.py::test_losing_the_latest_parent_grafts_another_peer_at_once",)),
    Mutant("source-parents-ignored", PLUM,
           "                or sender in self._parent_count):", "                or False):",
           "source_parents on: the first pusher of a recent source is PRUNEd for a duplicate",
           ("tests/test_gossip_dissemination.py::test_first_pusher_of_a_recent_source_is_not_pruned",)),
    Mutant("prune-two-way", PLUM,
           "        if not self.cfg.prune_one_way:\n            self._make_lazy(sender)\n        self.pruned[sender] = None\n"
           '        self.counters.prune_sent += 1',
           "        self._make_lazy(sender)\n        self.pruned[sender] = None\n"
           '        self.counters.prune_sent += 1',
           "a duplicate also stops our pushes to its sender (the link goes lazy both ways at once)",
           (rule("test_duplicate_event_is_answered_with_one_prune"),)),
    Mutant("optimize-single-sample", PLUM,
           "if tally[1] < self.cfg.optimize_samples:", "if False:",
           "one event's shortcut re-routes the tree (no mean over optimize_samples)",
           (rule("test_tree_reroots_on_the_mean_gain_over_optimize_samples"),)),
    # --- anti-entropy ----------------------------------------------------------------------------
    Mutant("first-peer-ae-removed", CORE,
           "        if len(self.membership.active) == 1:\n", "        if False:\n",
           "no early anti-entropy round when the first peer connects",
           (rule("test_first_peer_starts_a_round_within_the_followup_delay"),)),
    Mutant("ae-agreement-shortcut-removed", AE,
           "    if root == summary.root():\n        return Plan()\n", "",
           "agreeing peers still exchange a TREE",
           ("tests/test_gossip_core.py::test_agreeing_round_costs_the_same_bytes_at_any_history_size",)),
    Mutant("ae-want-removed", AE,
           "        want.extend(i for i in theirs if i.startswith(prefix) and not have_it(i))", "        pass",
           "IDS does not lead to a WANT of the ids we lack",
           (rule("test_ids_message_is_answered_with_want_of_missing_ids_only"),)),
    Mutant("ae-want-known", AE,
           "i.startswith(prefix) and not have_it(i))", "i.startswith(prefix))",
           "IDS leads to a WANT of ids we already hold",
           (rule("test_ids_message_is_answered_with_want_of_missing_ids_only"),)),
    Mutant("ae-want-pending", CORE,
           "return event_id in self.summary or self.replica.ledger.is_pending(event_id)", "return event_id in self.summary",
           "ids parked in the pending buffer are asked for again",
           (rule("test_pending_event_is_neither_wanted_nor_grafted_again"),)),
    Mutant("ae-wantp-removed", AE,
           "        if ours == 0:\n            wantp.append(child)",
           "        if ours == 0:\n            pass",
           "a bucket empty here is not asked for (WANTP)",
           (rule("test_tree_answer_asks_for_buckets_empty_here_and_serves_buckets_empty_there"),)),
    Mutant("ae-empty-there-not-served", AE,
           "            if len(serve) < serve_max:\n                serve.extend(summary.ids_in(child)[:serve_max - len(serve)])",
           "            pass",
           "a bucket empty on the other side is not served at once",
           (rule("test_tree_answer_asks_for_buckets_empty_here_and_serves_buckets_empty_there"),)),
    Mutant("ae-small-batch-not-pushed", CORE,
           'via = "ae_push" if len(msg.es) <= self.cfg.ae_push_max and not catching_up else "ae"', 'via = "ae"',
           "a small repaired batch is only announced, not pushed on",
           (rule("test_small_repair_is_pushed_on_and_a_catch_up_only_announced"),)),
    Mutant("ae-catchup-pushed", CORE,
           'via = "ae_push" if len(msg.es) <= self.cfg.ae_push_max and not catching_up else "ae"',
           'via = "ae_push"',
           "a big catch-up batch is pushed on as EVENT frames",
           (rule("test_small_repair_is_pushed_on_and_a_catch_up_only_announced"),)),
    Mutant("ae-announce-removed", CORE,
           "            if self.cfg.ae_announce:\n                self.plumtree.announce(ev.id, sender, now)",
           "            pass",
           "events recovered by a catch-up are not announced to the other peers",
           (rule("test_small_repair_is_pushed_on_and_a_catch_up_only_announced"),)),
    Mutant("serve-unthrottled", SERVE,
           "while n > 0 and not bucket.take(n, now):", "while False:",
           "a WANT/GRAFT is served without the per-peer serve allowance",
           (rule("test_serving_is_throttled_per_peer"),)),
    Mutant("serve-max-removed", SERVE,
           "ordered = self.host.in_store_order(dict.fromkeys(ids))[:self.cfg.ae_serve_max]",
           "ordered = self.host.in_store_order(dict.fromkeys(ids))",
           "one WANT is served more than ae_serve_max events",
           (rule("test_one_want_is_served_at_most_ae_serve_max_events"),)),
    # --- membership and discovery ----------------------------------------------------------------
    Mutant("shuffle-not-answered", MEMB,
           "        self.host.send(link, ShuffleReply(peers=tuple(self._peer_sample(exclude=link.key))))\n", "",
           "a SHUFFLE gets no SHUFFLE_REPLY",
           (rule("test_shuffle_is_answered_and_merged_into_the_passive_view"),)),
    Mutant("shuffle-not-merged", MEMB,
           "        self.host.send(link, ShuffleReply(peers=tuple(self._peer_sample(exclude=link.key))))\n"
           "        self._merge_peers(msg.peers, now, sender=link)",
           "        self.host.send(link, ShuffleReply(peers=tuple(self._peer_sample(exclude=link.key))))",
           "the peers of a SHUFFLE are not learned",
           (rule("test_shuffle_is_answered_and_merged_into_the_passive_view"),)),
    Mutant("no-shuffle-with-new-peer", MEMB,
           "            self._send_shuffle(link, now)  # a joining node", "            pass  # a joining node",
           "a joining node does not shuffle with its first peers",
           (rule("test_a_node_with_a_small_passive_view_shuffles_with_each_new_peer"),)),
    Mutant("peer-not-remembered", MEMB,
           "            self.peer_book.remember_peer(link.key, link.listen, now)", "            pass",
           "peers met are not remembered in the store (a restart starts from nothing)",
           (rule("test_peers_met_are_redialed_after_a_restart"),)),
    Mutant("inbound-bootstrap-accepted", MEMB,
           "if not link.outbound or self.boot is not None:", "if self.boot is not None:",
           "an inbound connection saying role 'bootstrap' is taken as this node's discovery link",
           (rule("test_an_inbound_discovery_node_is_refused"),)),
    Mutant("bootstrap-never-dialed", MEMB,
           "        self.ev.bootstrap_dials += 1\n        self.host.dial(addr)",
           "        self.ev.bootstrap_dials += 1",
           "a node never dials its bootstrap",
           ("tests/test_gossip_network.py::test_overlay_forms_through_discovery",)),
    Mutant("periodic-shuffle-removed", MEMB,
           "                self._send_shuffle(self.rng.choice(list(self.active.values())), now)", "                pass",
           "no SHUFFLE every shuffle_interval",
           (rule("test_a_shuffle_goes_out_every_shuffle_interval"),)),
    Mutant("banned-peer-learned", MEMB,
           'if key == self.key or key in self.active or self.host.is_banned(key, now):',
           "if key == self.key or key in self.active:",
           "a banned key offered in a shuffle enters the passive view",
           (rule("test_shuffle_is_answered_and_merged_into_the_passive_view"),)),
    Mutant("max-degree-not-enforced", MEMB,
           "        if len(self.active) > self.cfg.max_degree:\n            self._drop_links(", "        if False:\n            self._drop_links(",
           "a node accepts links past max_degree",
           (rule("test_links_past_max_degree_are_closed_tree_links_last"),)),
    Mutant("drop-ignores-tree", MEMB,
           "tiers[ours + self.host.tree_weight(key)].append(link)", "tiers[ours].append(link)",
           "over the maximum degree, links the tree uses are as likely to go as lazy ones",
           (rule("test_links_past_max_degree_are_closed_tree_links_last"),)),
    Mutant("no-dial-below-target", MEMB,
           "            if want > 0:", "            if False:",
           "a node below target degree does not dial passive peers",
           (rule("test_below_target_a_node_dials_its_passive_peers"),)),
    Mutant("gone-peer-forgotten", MEMB,
           "            self.passive.add(link.key, link.listen, self.rng)", "            pass",
           "the address of a peer that disconnects is not kept in the passive view",
           (rule("test_a_peer_that_disconnects_is_kept_as_passive_and_redialed"),)),
    Mutant("dead-address-kept", MEMB,
           "if fails >= 4:", "if False:",
           "an address that failed 4 times in a row stays in the passive view",
           (rule("test_address_failing_four_times_is_forgotten"),)),
    Mutant("sample-every-tick", MEMB,
           "if force or now - self._last_sample >= self.cfg.sample_interval:", "if True:",
           "a node below target asks its bootstrap for a SAMPLE on every tick",
           (rule("test_node_heartbeats_its_bootstrap_every_interval"),)),
    Mutant("no-sample-below-target", MEMB,
           "                self._dial_passive(min(want, cfg.dials_per_tick), now)\n            self._ask_sample(now)",
           "                self._dial_passive(min(want, cfg.dials_per_tick), now)",
           "a node below target never asks for another SAMPLE",
           (rule("test_node_heartbeats_its_bootstrap_every_interval"),)),
    Mutant("no-dial-backoff", MEMB,
           "        self.ev.dial_failures += 1\n        self.backoff.failed(addr, now, self.rng.uniform(0.0, 0.25))",
           "        self.ev.dial_failures += 1",
           "a failed address is redialed at once (no exponential backoff)",
           (rule("test_address_failing_four_times_is_forgotten"),)),
    Mutant("refresh-never-dials", MEMB,
           "        for addr in self._dial_passive(1, now):\n            self._refresh_dials[addr] = None", "        pass",
           "no overlay refresh (a node at its target degree never dials a new peer)",
           (rule("test_refresh_dials_a_new_peer_then_drops_a_lazy_link"),
            "tests/test_gossip_network.py::test_partition_heals")),
    Mutant("refresh-keeps-every-link", MEMB,
           '            self._drop_links(1, new, "overlay refresh", now)', "            pass",
           "after a refresh dial no link is dropped (degrees creep up to the maximum)",
           (rule("test_refresh_dials_a_new_peer_then_drops_a_lazy_link"),)),
    Mutant("heartbeat-removed", MEMB,
           "            self.host.send(self.boot, Heartbeat())", "            pass",
           "a node never heartbeats its bootstrap",
           (rule("test_node_heartbeats_its_bootstrap_every_interval"),)),
    Mutant("send-queue-unbounded", f"{GOSSIP}/transport.py",
           "if conn.queued + len(data) > self.config.send_queue_max_bytes:", "if False:",
           "a peer that never reads makes the transport buffer without bound",
           ("tests/test_network_transport.py::test_a_peer_that_never_reads_is_dropped_with_bounded_queue",)),
    Mutant("discovery-serves-any-role", DISC,
           "        if link.role != \"node\":\n            self.links.close(", "        if False:\n            self.links.close(",
           "a discovery node accepts another discovery node as a client",
           (rule("test_a_discovery_node_serves_only_nodes"),)),
    Mutant("discovery-expiry-removed", DISC,
           'self.disc.expired += self.registry.expire(now - horizon)', "pass",
           "the bootstrap never expires silent registrations",
           ("tests/test_gossip_discovery.py::test_entries_expire_after_missed_heartbeats",)),
)


# --- running -------------------------------------------------------------------------------------

@dataclass(slots=True)
class Result:
    mutant: Mutant
    status: str          # "caught", "SURVIVED", "SNIPPET NOT FOUND", "SNIPPET AMBIGUOUS", "ERROR"
    detail: str


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for d in COPIED_DIRS:
        shutil.copytree(ROOT / d, dest / d, ignore=ignore)
    for f in COPIED_FILES:
        if (ROOT / f).exists():
            shutil.copy2(ROOT / f, dest / f)


def run_pytest(tree: Path, tests: Sequence[str], timeout: float) -> tuple[int, list[str], str]:
    """Run ``tests`` in ``tree``; (exit code, node ids that failed or errored, output tail)."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "--timeout",
           str(int(timeout)), *tests]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        return -1, [], "pytest run timed out"
    out = proc.stdout + proc.stderr
    failed = [m.group(2) for m in re.finditer(r"^(FAILED|ERROR) (\S+)", out, re.MULTILINE)]
    return proc.returncode, list(dict.fromkeys(failed)), "\n".join(out.strip().splitlines()[-5:])


def apply(tree: Path, mutant: Mutant) -> tuple[str | None, str]:
    """Edit the copy; (None, original text) on success, else (status, reason)."""
    path = tree / mutant.file
    if not path.exists():
        return "SNIPPET NOT FOUND", f"{mutant.file} does not exist (update the mutant)"
    text = path.read_text(encoding="utf-8")
    n = text.count(mutant.original)
    if n == 0:
        return "SNIPPET NOT FOUND", f"snippet not found in {mutant.file} (update the mutant)"
    if n > 1:
        return "SNIPPET AMBIGUOUS", f"snippet occurs {n} times in {mutant.file} (make it unique)"
    path.write_text(text.replace(mutant.original, mutant.replacement), encoding="utf-8")
    return None, text


def check(tree: Path, mutant: Mutant, tests: Sequence[str], timeout: float) -> Result:
    status, saved = apply(tree, mutant)
    if status is not None:
        return Result(mutant, status, saved)
    try:
        code, failed, tail = run_pytest(tree, tests, timeout)
    finally:
        (tree / mutant.file).write_text(saved, encoding="utf-8")
    if code == 0:
        return Result(mutant, "SURVIVED", "every test passed")
    if failed:
        return Result(mutant, "caught", ", ".join(short(f) for f in failed))
    if code == -1:
        return Result(mutant, "caught", "timeout (" + tail + ")")
    return Result(mutant, "caught", f"pytest exit {code}: " + tail.replace("\n", " | ")[:200])


def short(node_id: str) -> str:
    return node_id.replace("tests/", "").replace(".py::", "::")


def table(results: Sequence[Result]) -> str:
    w1 = max([len("mutant")] + [len(r.mutant.name) for r in results])
    w2 = max([len("result")] + [len(r.status) for r in results])
    lines = [f"{'mutant':<{w1}}  {'result':<{w2}}  caught by / why", f"{'-' * w1}  {'-' * w2}  {'-' * 40}"]
    lines += [f"{r.mutant.name:<{w1}}  {r.status:<{w2}}  {r.detail}" for r in results]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], help="run mutants whose name contains this")
    parser.add_argument("--against", action="append", default=[],
                        help="run these tests (files or node ids) instead of each mutant's named tests")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per pytest run")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or any(o in m.name for o in args.only)]
    if args.list:
        for m in mutants:
            print(f"{m.name}: {m.description}\n    {m.file}; tests: {', '.join(short(t) for t in m.tests)}")
        return 0
    if not mutants:
        print("no mutant matches --only", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="p2pauction-mutants-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        baseline = args.against or list(dict.fromkeys(t for m in mutants for t in m.tests))
        code, failed, tail = run_pytest(tree, baseline, args.timeout)
        if code != 0:
            print("the tests fail on the UNMUTATED copy, so no mutant can be judged:", file=sys.stderr)
            print("\n".join(failed) or tail, file=sys.stderr)
            return 2
        results = []
        for m in mutants:
            results.append(check(tree, m, args.against or m.tests, args.timeout))
            print(f"  {m.name}: {results[-1].status}", file=sys.stderr, flush=True)
    print(table(results))
    bad = [r for r in results if r.status != "caught"]
    print(f"\n{len(results) - len(bad)} of {len(results)} mutants caught" +
          (f"; NOT caught: {', '.join(r.mutant.name for r in bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

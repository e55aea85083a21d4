"""Named reasons for rejecting an event, one per rule of SPEC §2.

The same tags travel in ``DecodeError.reason`` (format rules, checked by the decoder) and in
``Outcome.reason`` (every rule, checked by the ledger), and in ``RuleViolation.reason`` when a
local author is refused before signing.
"""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    # format (events.decode_event)
    OVERSIZE = "oversize"                  # encoded event over MAX_EVENT_BYTES
    MALFORMED = "malformed"                # not UTF-8 JSON of an object
    NON_CANONICAL = "non_canonical"        # valid JSON, but not the one canonical encoding
    BAD_FIELD = "bad_field"                # missing/extra field, wrong type, out-of-range value
    BAD_MONEY = "bad_money"                # a money field that is not canonical money
    BAD_DEPS = "bad_deps"                  # unsorted/duplicate/too many deps, empty or present wrongly
    # ledger, any kind
    WRONG_NET = "wrong_net"                # the event belongs to another network
    BAD_SIGNATURE = "bad_signature"        # signature does not verify for `author`
    BAD_LAMPORT = "bad_lamport"            # lamport != 1 + max(lamport of deps) (1 for an open)
    CROSS_AUCTION_DEP = "cross_auction_dep"  # a dep belongs to another auction
    INVALID_DEP = "invalid_dep"            # a dep was itself rejected
    # auction.open
    ENDS_BEFORE_OPEN = "ends_before_open"  # ends_at <= ts
    # bid.place
    SELLER_BID = "seller_bid"              # the seller bids on its own auction
    AUCTION_CLOSED = "auction_closed"      # a close is in the event's causal past
    AFTER_END = "after_end"                # ts > ends_at
    BELOW_START = "below_start"            # amount < start_price
    NOT_ABOVE_BEST = "not_above_best"      # amount <= best(e).amount
    BELOW_INCREMENT = "below_increment"    # amount < best(e).amount + min_increment
    # auction.close
    NOT_SELLER = "not_seller"              # closed by someone other than the seller
    WRONG_WINNER = "wrong_winner"          # winner != best(e)


# Reasons that follow from the content and causal past alone (not from one copy's signature):
# any copy of an event with the same id gets the same verdict, so they may be cached by id and
# may cascade to events that depend on it.
CONTENT_REASONS: frozenset[RejectReason] = frozenset(RejectReason) - {
    RejectReason.BAD_SIGNATURE, RejectReason.OVERSIZE, RejectReason.MALFORMED,
    RejectReason.NON_CANONICAL}

"""The outputs of a sans-IO core: what the driver (asyncio adapter or simulator) must do.

The driver delivers every ``Send`` in order per connection, performs ``Dial``s (then calls
``connection_made(outbound=True, remote_addr=<the dialed addr>)`` or ``dial_failed``), closes on
``CloseConn`` *after* writing the ``Send``s queued before it (so the ERROR frame goes out), then
calls ``connection_lost``. ``Accepted`` is informational (feeds, the simulator's checker).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from p2pauction.state.events import Event

Address = str  # "host:port"


@dataclass(frozen=True, slots=True)
class Send:
    conn: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Dial:
    addr: Address


@dataclass(frozen=True, slots=True)
class CloseConn:
    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class Accepted:
    event: Event
    own: bool
    hops: int = 0  # gossip hops of the first copy: 0 for own events, -1 unknown (anti-entropy repair)


Action = Union[Send, Dial, CloseConn, Accepted]

"""How event times (integer milliseconds since the epoch, a claim of the author) are shown to people.

The validity rules accept any ``ts`` or ``ends_at`` from 0 to 2^63-1 ms, far beyond the calendar
Python's ``datetime`` covers (years 1 to 9999). Every human rendering goes through
:func:`format_ms`: a time inside the calendar is shown as a UTC date; any other legal value is shown
as its raw milliseconds with ``(beyond year 9999)``, never an error. JSON output always carries the
raw integer.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# the last millisecond datetime can show: 9999-12-31 23:59:59.999 UTC
MAX_CALENDAR_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)

DATE_TIME = "%Y-%m-%d %H:%M:%S UTC"
CLOCK = "%H:%M:%S"


def format_ms(ms: object, pattern: str = DATE_TIME) -> str:
    """``ms`` as UTC text in ``pattern`` (strftime); ``-`` for None; raw milliseconds with a note
    for a value outside the calendar (or not an integer at all: JSON from elsewhere)."""
    if ms is None:
        return "-"
    if not isinstance(ms, int) or isinstance(ms, bool):
        return f"{ms!r} (not a time)"
    if ms > MAX_CALENDAR_MS:
        return f"{ms} ms (beyond year 9999)"
    if ms < 0:
        return f"{ms} ms (before 1970)"
    return (_EPOCH + timedelta(milliseconds=ms)).strftime(pattern)

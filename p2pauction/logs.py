"""structlog setup for the command line: readable on a terminal, JSON lines with ``--log-format json``.

Logs go to stderr so that a command's stdout stays clean for its result (and for ``--json``).
Library code only calls ``structlog.get_logger(__name__)``; an application that embeds
:class:`p2pauction.AuctionNode` configures structlog itself (or calls :func:`configure`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from io import StringIO
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, ExcInfo, WrappedLogger

from p2pauction.display import safe_text

LOG_FORMATS = ("auto", "console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog output to ``stream`` (stderr by default) at ``level``.

    ``fmt``: ``json`` gives one JSON object per line (for log collectors); ``console`` a
    human-readable line; ``auto`` is ``console``, with colours only when the stream is a terminal.
    """
    out = stream if stream is not None else sys.stderr
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
    else:
        colors = fmt == "auto" and _is_tty(out)
        renderer = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=_safe_traceback)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        processors.append(structlog.processors.format_exc_info)  # JSON escapes; values stay exact
    else:
        processors.append(escape_console_values)
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def escape_console_values(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Make every value of a console log line inert: logs quote peers (names, addresses, errors).

    Strings are escaped by :func:`p2pauction.display.safe_text`; another value is replaced by its
    escaped ``repr`` (what the console renderer prints) only when that repr is not inert already.
    The stack keeps its line breaks.
    """
    out: EventDict = {}
    for key, value in event_dict.items():
        if key == "exc_info" or value is None or isinstance(value, bool | int | float):
            out[key] = value
        elif key == "stack":
            out[key] = _safe_lines(str(value))
        elif isinstance(value, str):
            out[safe_text(str(key))] = safe_text(value)
        else:
            shown = repr(value)
            safe = safe_text(shown)
            out[safe_text(str(key))] = value if safe == shown else safe
    return out


def _safe_traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    """structlog's plain traceback made inert: exception messages may quote peers.

    A message is escaped as a whole first (a newline in it must not start a line of its own);
    the frames are our code, and their lines are then escaped one by one.
    """
    buffer = StringIO()
    structlog.dev.plain_traceback(buffer, exc_info)
    text = buffer.getvalue()
    for message in _messages(exc_info[1]):
        safe = safe_text(message)
        if safe != message:
            text = text.replace(message, safe)
    sio.write(_safe_lines(text))


def _messages(exc: BaseException | None, depth: int = 0) -> Iterator[str]:
    """``str()`` of an exception, of its cause or context, and of a group's members (bounded)."""
    if exc is None or depth > 20:
        return
    yield str(exc)
    yield from (str(note) for note in getattr(exc, "__notes__", ()))
    yield from _messages(exc.__cause__ or exc.__context__, depth + 1)
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _messages(inner, depth + 1)


def _safe_lines(text: str) -> str:
    return "\n".join(safe_text(line) for line in text.split("\n"))

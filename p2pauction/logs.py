"""Logging: the library logs through stdlib ``logging``; only the command line decides rendering.

Library code takes its logger from :func:`get_logger` (structlog's API, bound to a stdlib
``logging.Logger`` of the same name). Nothing reaches stdout or stderr unless the application
configures logging: the ``p2pauction`` logger carries a :class:`logging.NullHandler`, as a library
should. Each record's message is a readable ``event key=value ...`` line, so any stdlib handler an
application installs shows something sensible, and the structured fields ride along on the record
as ``record.p2pauction_event`` (a dict) for handlers that want them.

:func:`configure` is what the CLI calls: one handler on stderr (so a command's stdout stays clean
for its result and for ``--json``) that renders those fields readably on a terminal, or as one JSON
object per line with ``--log-format json``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from io import StringIO
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, ExcInfo, WrappedLogger

from p2pauction.display import safe_text

LOG_FORMATS = ("auto", "console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
ROOT_LOGGER = "p2pauction"
EVENT_ATTR = "p2pauction_event"

logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())


def _to_stdlib(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The last processor: a readable message for any handler, the fields for ours."""
    fields = dict(event_dict)
    exc_info = fields.get("exc_info")
    kwargs: dict[str, Any] = {"extra": {EVENT_ATTR: fields}}
    if exc_info:
        kwargs["exc_info"] = exc_info
    return (plain_message(fields),), kwargs


_LIBRARY_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,  # cheap early exit when the level is off
    structlog.contextvars.merge_contextvars,
    _to_stdlib,
]


def get_logger(name: str) -> Any:
    """A structlog logger (``log.info("event", key=value)``) that emits stdlib records on ``name``.

    Independent of structlog's global configuration, so an application's own structlog set-up
    neither changes nor is changed by ours.
    """
    return structlog.wrap_logger(logging.getLogger(name), processors=_LIBRARY_PROCESSORS,
                                 wrapper_class=structlog.stdlib.BoundLogger,
                                 cache_logger_on_first_use=True)


def plain_message(fields: Mapping[str, Any]) -> str:
    """``event key=value ...``: values repr'd unless plain words, and inert (peers are quoted)."""
    parts = [safe_text(str(fields.get("event", "")))]
    for key, value in fields.items():
        if key in ("event", "exc_info"):
            continue
        text = value if isinstance(value, str) and value.isprintable() and " " not in value else repr(value)
        parts.append(f"{safe_text(str(key))}={safe_text(text)}")
    return " ".join(parts)


class StructuredFormatter(logging.Formatter):
    """Renders a record's structured fields with a structlog renderer (console or JSON)."""

    def __init__(self, fmt: str, stream: TextIO) -> None:
        super().__init__()
        self.json = fmt == "json"
        self.renderer: Any
        if self.json:
            self.renderer = structlog.processors.JSONRenderer(sort_keys=True)
        else:
            self.renderer = structlog.dev.ConsoleRenderer(colors=fmt == "auto" and _is_tty(stream),
                                                          exception_formatter=_safe_traceback)
        self._timestamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
        self._exc = structlog.processors.format_exc_info

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, EVENT_ATTR, None)
        event: MutableMapping[str, Any] = (dict(fields) if isinstance(fields, Mapping)
                                           else {"event": record.getMessage()})
        event.pop("exc_info", None)
        if record.exc_info:
            event["exc_info"] = record.exc_info
        event["level"] = record.levelname.lower()
        event["logger"] = record.name
        event = self._timestamp(None, record.levelname.lower(), event)
        if self.json:  # JSON escapes everything; values stay exact
            event = self._exc(None, record.levelname.lower(), event)
        else:  # a console line quotes peers (names, addresses, errors): make it inert
            event = escape_console_values(None, record.levelname.lower(), event)
        return str(self.renderer(None, record.levelname.lower(), event))


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Send the ``p2pauction`` and ``simulations`` loggers to ``stream`` (stderr) at ``level``.

    ``fmt``: ``json`` gives one JSON object per line (for log collectors); ``console`` a
    human-readable line; ``auto`` is ``console``, with colours only when the stream is a terminal.
    Calling it again replaces the previous handler (tests and the demo reconfigure).
    """
    out = stream if stream is not None else sys.stderr
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    handler = logging.StreamHandler(out)
    handler.setFormatter(StructuredFormatter(fmt, out))
    handler.set_name("p2pauction-cli")
    for name in (ROOT_LOGGER, "simulations"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "p2pauction-cli"]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(numeric)
        logger.propagate = False


def set_level(level: str) -> None:
    """Only change the level (the simulator keeps thousands of nodes quiet this way)."""
    numeric = logging.getLevelName(level.upper())
    logging.getLogger(ROOT_LOGGER).setLevel(numeric if isinstance(numeric, int) else logging.INFO)


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


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

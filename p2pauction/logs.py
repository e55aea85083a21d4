"""structlog setup for the command line: readable on a terminal, JSON lines with ``--log-format json``.

Logs go to stderr so that a command's stdout stays clean for its result (and for ``--json``).
Library code only calls ``structlog.get_logger(__name__)``; an application that embeds
:class:`p2pauction.AuctionNode` configures structlog itself (or calls :func:`configure`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

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
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        processors.append(structlog.processors.format_exc_info)
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

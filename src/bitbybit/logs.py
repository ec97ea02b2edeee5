"""Structured logs on stderr, one format for every line: bitbybit's own events and the standard
library's records (uvicorn's among them) go through the same structlog processors.

Off a terminal (a service manager, a container, a pipe) each line is one JSON object; on a
terminal it is a readable ``timestamp [level] event key=value`` line. ``BITBYBIT_LOG_FORMAT``
(``json`` or ``console``) overrides the guess. Ids travel as fields; a request's id is bound for
the request's duration (``request_id``), so every line it causes carries it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

FORMATS = ("json", "console")

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def log_format(environ: dict[str, str] | None = None, stream: Any = None) -> str:
    """``json`` or ``console``: the variable if set (anything else is an error), else
    ``console`` on a terminal."""
    chosen = (environ if environ is not None else os.environ).get("BITBYBIT_LOG_FORMAT", "")
    if chosen:
        if chosen not in FORMATS:
            raise ValueError(f"BITBYBIT_LOG_FORMAT must be json or console, not {chosen!r}")
        return chosen
    isatty = getattr(stream if stream is not None else sys.stderr, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def _renderer(chosen: str) -> Any:
    if chosen == "console":
        return structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)
    return structlog.processors.JSONRenderer()


def configure_logging(level: int = logging.INFO, chosen: str | None = None) -> None:
    chosen = chosen or log_format()
    renderer = _renderer(chosen)
    # The console renderer prints a traceback itself from ``exc_info``; JSON needs it as text.
    exceptions: list[Any] = [structlog.processors.format_exc_info] if chosen == "json" else []
    structlog.configure(
        processors=[*_SHARED, *exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_SHARED, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *exceptions,  # uvicorn's "Exception in ASGI application" carries its traceback
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    adopt_library_loggers()


def adopt_library_loggers(names: tuple[str, ...] = ("uvicorn", "uvicorn.error")) -> None:
    """Send these loggers' records to the root handler (uvicorn installs plain-text handlers of
    its own when its ``Config`` is made); uvicorn's access log stays off, as ``serve`` sets."""
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True

"""Structured logging: JSON lines for machines, coloured lines for a person at a terminal.

Every JSON line is one object so operators can ship logs to any collector; per-call lines carry
`call_id` (bound with `structlog.contextvars` or `log.bind`) so one call can be followed across
the SIP, media and agent layers. Someone who runs `make run` in a terminal reads the same events
as coloured `time level event key=value` lines instead (structlog's console renderer): the format
follows where the lines go, unless `--log-format` says otherwise.
"""

from __future__ import annotations

import enum
import logging
import sys
from typing import TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class LogFormat(enum.StrEnum):
    """How log lines are rendered (`--log-format`)."""

    AUTO = "auto"  # console on a terminal, JSON otherwise
    JSON = "json"
    CONSOLE = "console"


def resolve_format(requested: LogFormat, stream: TextIO) -> LogFormat:
    """The format actually used: AUTO becomes CONSOLE only when `stream` is a terminal, so
    pipes, files, journald and the tests' log readers always get JSON."""
    if requested is not LogFormat.AUTO:
        return requested
    isatty = getattr(stream, "isatty", None)
    return LogFormat.CONSOLE if isatty is not None and isatty() else LogFormat.JSON


def configure_logging(level: str = "info", stream: TextIO | None = None,
                      log_format: LogFormat = LogFormat.AUTO) -> LogFormat:
    """Send structlog lines to `stream` (stderr by default) at `level`; returns the format chosen."""
    out = stream or sys.stderr
    chosen = resolve_format(log_format, out)
    if chosen is LogFormat.CONSOLE:
        renderer: structlog.typing.Processor = structlog.dev.ConsoleRenderer(colors=True)
        stamp = structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False)
    else:
        renderer = structlog.processors.JSONRenderer()
        stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    processors: list[structlog.typing.Processor] = [structlog.contextvars.merge_contextvars,
                                                    structlog.processors.add_log_level, stamp]
    if chosen is LogFormat.JSON:  # the console renderer prints a traceback itself, readably
        processors.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    return chosen


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(logger=name)

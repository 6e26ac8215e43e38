"""structlog set up once per process: JSON when not on a terminal, readable on one."""

from __future__ import annotations

import logging
import os
import sys

import structlog

__all__ = ["configure_logging", "get_logger"]


def configure_logging(level: str | None = None, *, json: bool | None = None) -> None:
    """`LOG_LEVEL` (or Felix's `FELIX_LOGSEVERITYSCREEN`) picks the level; default info."""
    name = (level or os.environ.get("LOG_LEVEL") or os.environ.get("FELIX_LOGSEVERITYSCREEN")
            or "info").upper()
    numeric = logging.getLevelName(name if name != "WARN" else "WARNING")
    if not isinstance(numeric, int):
        numeric = logging.INFO
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]

"""Logging to stderr as text or JSON lines. Nothing tradeguard logs holds a secret."""

from __future__ import annotations

import json
import logging
import sys

from tradeguard.clock import isoformat, utcnow


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": isoformat(utcnow()),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, sort_keys=True)


def configure_logging(log_format: str = "text", level: str = "WARNING") -> None:
    """Send tradeguard's logs to stderr in *log_format* ("text" or "json")."""
    logger = logging.getLogger("tradeguard")
    for handler in list(logger.handlers):
        if getattr(handler, "_tradeguard", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._tradeguard = True  # type: ignore[attr-defined]
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, str(level).upper(), logging.WARNING))
    logger.propagate = False

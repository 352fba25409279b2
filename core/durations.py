"""Durations written the way operators write them: ``90d``, ``12h``, ``30m``, ``45s``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

from tradeguard.errors import ConfigError, ValidationError

_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: object, name: str = "duration", *, config: bool = False) -> timedelta:
    """``90d`` -> timedelta(days=90). Bad text raises ValidationError (ConfigError if *config*)."""
    if isinstance(text, timedelta):
        return text
    match = _PATTERN.match(str(text))
    if not match:
        error = ConfigError if config else ValidationError
        raise error(f"{name}: expected a duration like 90d, 12h, 30m or 2w, got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def format_duration(value: timedelta) -> str:
    """A short human form: ``3d4h``, ``12m``, ``40s``."""
    seconds = int(value.total_seconds())
    if seconds < 0:
        return "-" + format_duration(-value)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"

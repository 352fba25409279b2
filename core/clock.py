"""UTC, timezone-aware time. Nothing in tradeguard uses a naive datetime."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(timezone.utc)


def ensure_utc(value: datetime) -> datetime:
    """Return *value* in UTC; a naive datetime is refused (it is ambiguous)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: tradeguard stores timezone-aware UTC timestamps only")
    return value.astimezone(timezone.utc)


def isoformat(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC text, e.g. ``2026-01-02T03:04:05.000006Z`` (sorts as text)."""
    if value.tzinfo is not timezone.utc:
        value = ensure_utc(value)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)


def parse_iso(text: str) -> datetime:
    """Parse ISO-8601 text (``Z`` or an offset; a bare date is midnight UTC) into aware UTC."""
    try:  # the stored form (``…Z``) parses directly
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is not None and value.tzinfo is timezone.utc:
        return value
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)

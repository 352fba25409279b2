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
    return ensure_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse ISO-8601 text (``Z`` or an offset; a bare date is midnight UTC) into aware UTC."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)

"""Retention policies, restic-style: keep-last, keep-daily, keep-weekly.

* keep-last N: the N newest backups;
* keep-daily D: for each of the D newest days (UTC) that have a backup, the newest backup of that day;
* keep-weekly W: the same per ISO week.

A backup kept by any rule stays. The newest *verified* backup always stays,
whatever the policy says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

from tradeguard.errors import ValidationError


@dataclass
class Plan:
    """What a prune keeps (with the reasons) and removes."""

    keep: dict[str, list[str]] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)


def plan(backups: Sequence[dict[str, Any]], keep_last: int = 0, keep_daily: int = 0, keep_weekly: int = 0) -> Plan:
    """Decide which of *backups* (dicts with ``id``, ``created`` datetime, ``verified`` bool) to keep."""
    for name, value in (("keep-last", keep_last), ("keep-daily", keep_daily), ("keep-weekly", keep_weekly)):
        if value < 0:
            raise ValidationError(f"--{name} must be 0 or more, got {value}")
    if keep_last == keep_daily == keep_weekly == 0:
        raise ValidationError("no retention policy: give at least one of --keep-last, --keep-daily, --keep-weekly")
    ordered = sorted(backups, key=lambda b: (b["created"], b["id"]), reverse=True)
    result = Plan()

    def keep(backup_id: str, reason: str) -> None:
        result.keep.setdefault(backup_id, []).append(reason)

    for b in ordered[:keep_last]:
        keep(b["id"], "last")
    _bucketed(ordered, keep_daily, lambda d: d.strftime("%Y-%m-%d"), "daily", keep)
    _bucketed(ordered, keep_weekly, lambda d: "%d-W%02d" % d.isocalendar()[:2], "weekly", keep)
    verified = [b for b in ordered if b.get("verified")]
    if verified:
        keep(verified[0]["id"], "newest verified")
    result.remove = [b["id"] for b in ordered if b["id"] not in result.keep]
    return result


def _bucketed(ordered: Sequence[dict[str, Any]], count: int, bucket: Callable[[datetime], str], reason: str,
              keep: Callable[[str, str], None]) -> None:
    seen: set[str] = set()
    for b in ordered:
        if len(seen) >= count:
            return
        key = bucket(b["created"])
        if key not in seen:
            seen.add(key)
            keep(b["id"], reason)

"""The ``trading_hours`` rule: allow orders only inside a UTC window on chosen days."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timezone
from typing import Any, Mapping

from tradeguard import Decision, SettingSpec, ValidationError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


@dataclass(frozen=True)
class Window:
    """A parsed configuration: minutes since midnight UTC, and weekday numbers (Monday = 0)."""

    start: int
    end: int
    days: frozenset[int]
    block_reducing: bool

    def contains(self, moment: datetime) -> bool:
        """Whether *moment* (UTC) lies inside the window. A window that wraps midnight
        belongs to the day it starts on."""
        minute = moment.hour * 60 + moment.minute
        weekday = moment.weekday()
        if self.start == self.end:  # the whole day
            return weekday in self.days
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        if minute >= self.start:  # evening part of a window that wraps midnight
            return weekday in self.days
        return minute < self.end and (weekday - 1) % 7 in self.days


def _minutes(value: Any, name: str) -> int:
    match = _TIME.match(str(value).strip())
    if not match or (match.group(1) == "24" and match.group(2) != "00"):
        raise ValidationError(f"trading_hours.{name}: expected HH:MM in UTC (00:00 to 24:00), got {value!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


def _days(value: Any) -> frozenset[int]:
    days: set[int] = set()
    for part in str(value).lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValidationError(f"trading_hours.days: expected e.g. mon-fri or mon,wed,fri, got {value!r}")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def _bool(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValidationError(f"trading_hours.block_reducing: expected true or false, got {value!r}")


def parse_settings(settings: Mapping[str, Any]) -> Window:
    """Validate the rule's settings (strings from the CLI are fine); ValidationError names the bad one."""
    unknown = set(settings) - {spec.name for spec in TradingHoursRule.settings}
    if unknown:
        raise ValidationError(f"trading_hours: unknown setting(s) {', '.join(sorted(unknown))}")
    start = _minutes(settings.get("start", "00:00"), "start")
    end = _minutes(settings.get("end", "24:00"), "end") % (24 * 60)
    return Window(start % (24 * 60), end, _days(settings.get("days", "mon-sun")),
                  _bool(settings.get("block_reducing", False)))


class TradingHoursRule:
    """Blocks orders outside ``start``–``end`` UTC on ``days``."""

    name = "trading_hours"
    description = "block orders outside configured UTC trading hours"
    enabled_by_default = False
    settings = (
        SettingSpec("start", str, default="00:00", help="window start, HH:MM UTC (inclusive)"),
        SettingSpec("end", str, default="24:00", help="window end, HH:MM UTC (exclusive); before start wraps midnight"),
        SettingSpec("days", str, default="mon-sun", help="weekdays the window opens on: mon-fri, or mon,wed,fri"),
        SettingSpec("block_reducing", bool, default=False, help="also block reduce-only orders outside the window"),
    )

    def validate_settings(self, settings: Mapping[str, Any]) -> None:
        """Raise ValidationError if *settings* are not usable (`tradeguard risk set` calls this)."""
        parse_settings(settings)

    def check(self, request: Any, context: Any, settings: Mapping[str, Any]) -> Decision:
        """Allow inside the window; block outside it (reduce-only orders pass unless ``block_reducing``)."""
        window = parse_settings(settings)
        now = getattr(context, "now", None) or datetime.now(timezone.utc)
        now = now.astimezone(timezone.utc)
        metrics = {
            "now": now.isoformat(),
            "window": f"{time(window.start // 60, window.start % 60):%H:%M}-"
                      f"{time(window.end // 60, window.end % 60):%H:%M} UTC",
            "days": ",".join(DAYS[d] for d in sorted(window.days)),
        }
        if window.contains(now):
            return Decision.allow("inside trading hours", **metrics)
        if getattr(request, "reduce_only", False) and not window.block_reducing:
            return Decision.allow("outside trading hours, but the order only reduces exposure", **metrics)
        return Decision.block(f"outside trading hours ({metrics['window']}, {metrics['days']})", **metrics)

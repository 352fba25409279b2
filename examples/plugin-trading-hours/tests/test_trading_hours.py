"""Tests of the trading_hours rule, in the style docs/plugins.md recommends:
the plugin is registered on a fresh Engine by a fixture and removed after."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

import tradeguard_trading_hours
from tradeguard import Engine, OrderRequest, ValidationError, Verdict

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
SATURDAY_NOON = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(tmp_path):
    with Engine.open(f"sqlite:///{tmp_path / 'tg.db'}", home=tmp_path, load_entrypoints=False) as eng:
        name = eng.plugins.register(tradeguard_trading_hours, name="trading_hours")
        try:
            yield eng
        finally:
            eng.plugins.unregister(name)


def check(engine, settings, now, **order):
    rule = engine.plugins.risk_rules.get("trading_hours").factory
    request = OrderRequest(account="main", symbol="BTC/USDT", side="buy", quantity="1", **order)
    return rule.check(request, SimpleNamespace(now=now), settings)


def test_registered(engine):
    assert engine.plugins.risk_rules.get("trading_hours").plugin == "trading_hours"


@pytest.mark.parametrize(
    "settings, now, verdict",
    [
        ({"start": "09:00", "end": "17:00"}, MONDAY_NOON, Verdict.ALLOW),
        ({"start": "13:00", "end": "17:00"}, MONDAY_NOON, Verdict.BLOCK),
        ({"start": "09:00", "end": "17:00", "days": "mon-fri"}, SATURDAY_NOON, Verdict.BLOCK),
        ({"start": "22:00", "end": "13:00"}, MONDAY_NOON, Verdict.ALLOW),  # wraps midnight
    ],
)
def test_window(engine, settings, now, verdict):
    assert check(engine, settings, now).verdict is verdict


def test_reduce_only_passes_unless_blocked(engine):
    closed = {"start": "13:00", "end": "14:00"}
    assert check(engine, closed, MONDAY_NOON, reduce_only=True).verdict is Verdict.ALLOW
    assert check(engine, {**closed, "block_reducing": "true"}, MONDAY_NOON, reduce_only=True).verdict is Verdict.BLOCK


def test_bad_setting_is_a_clear_error(engine):
    with pytest.raises(ValidationError, match="trading_hours.start"):
        check(engine, {"start": "25:00"}, MONDAY_NOON)

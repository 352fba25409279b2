"""The storage layer keeps money exact and time in UTC on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tradeguard.errors import ValidationError
from tradeguard.storage import use_database
from tradeguard.storage.models import Account, BalanceSnapshot, Trade

EXACT_VALUES = [
    Decimal("0.1"),
    Decimal("1e-18"),
    Decimal("123456789012345678.123456789012345678"),
    Decimal("123456789012345678901234567"),  # 27-digit wei amount
    Decimal("-0.000000000000000001"),
]


def _account(engine, name="acct"):
    return engine.accounts.add(name, "paper")


def _snapshot(account, total, asset="BTC"):
    return BalanceSnapshot.create(account=account, asset=asset, free=total, used=0, total=total, source="test")


@pytest.mark.parametrize("value", EXACT_VALUES, ids=str)
def test_decimal_round_trips_exactly(engine, value):
    account = _account(engine)
    with use_database(engine.db):
        trade = Trade.create(account=account, exchange_trade_id="t1", exchange_timestamp=datetime.now(timezone.utc),
                             symbol="ETH/USDT", side="buy", price=1, quantity=1, realized_pnl=value)
        stored = Trade.get_by_id(trade.id).realized_pnl
    assert isinstance(stored, Decimal)
    assert stored == value
    assert str(stored.normalize()) == str(value.normalize())


def test_wei_amount_is_bit_for_bit(engine):
    account = _account(engine)
    wei = Decimal("987654321098765432109876543")
    with use_database(engine.db):
        snap = _snapshot(account, wei, "ETH")
        assert BalanceSnapshot.get_by_id(snap.id).total.as_tuple() == wei.as_tuple()


def test_order_by_and_range_filters_compare_numerically(engine):
    account = _account(engine)
    values = [Decimal(v) for v in ("10", "9", "-1", "-10", "0.5", "100.25", "1e-18", "2")]
    with use_database(engine.db):
        for v in values:
            Trade.create(account=account, exchange_trade_id=f"t{v}", exchange_timestamp=datetime.now(timezone.utc),
                         symbol="X/Y", side="sell", price=1, quantity=1, realized_pnl=v)
        ordered = [t.realized_pnl for t in Trade.select().order_by(Trade.realized_pnl)]
        assert ordered == sorted(values)
        between = {t.realized_pnl for t in Trade.select().where((Trade.realized_pnl > Decimal("-2")) & (Trade.realized_pnl < Decimal("10")))}
        assert between == {v for v in values if Decimal(-2) < v < Decimal(10)}
        assert Trade.select().where(Trade.realized_pnl >= Decimal("9")).count() == 3


def test_float_money_is_refused(engine):
    account = _account(engine)
    with use_database(engine.db), pytest.raises(ValidationError):
        _snapshot(account, 0.1)


def test_negative_amounts_are_refused_by_the_database(engine):
    import peewee

    account = _account(engine)
    with use_database(engine.db), pytest.raises(peewee.IntegrityError):
        with engine.db.atomic():
            _snapshot(account, Decimal("-1"))


def test_enumerations_are_checked_by_the_database(engine):
    import peewee

    account = _account(engine)
    with use_database(engine.db), pytest.raises(peewee.IntegrityError):
        with engine.db.atomic():
            engine.db.execute_sql(f"UPDATE account SET mode = 'YOLO' WHERE id = {account.id}")


def test_timestamps_are_aware_utc_and_sort(engine):
    account = _account(engine)
    base = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with use_database(engine.db):
        for i in range(3):
            BalanceSnapshot.create(account=account, asset="USDT", free=1, used=0, total=1, source="t",
                                   taken_at=base + timedelta(hours=i))
        rows = list(BalanceSnapshot.select().order_by(BalanceSnapshot.taken_at.desc()))
        assert [r.taken_at for r in rows] == [base + timedelta(hours=i) for i in (2, 1, 0)]
        assert all(r.taken_at.tzinfo is not None and r.taken_at.utcoffset() == timedelta(0) for r in rows)
        later = BalanceSnapshot.select().where(BalanceSnapshot.taken_at > base + timedelta(minutes=30)).count()
        assert later == 2


def test_naive_datetimes_are_refused(engine):
    account = _account(engine)
    with use_database(engine.db), pytest.raises(ValueError, match="naive"):
        BalanceSnapshot.create(account=account, asset="USDT", free=1, used=0, total=1, source="t",
                               taken_at=datetime(2026, 1, 1))


def test_sqlite_file_is_private_and_in_wal_mode(sqlite_engine, tmp_path):
    path = tmp_path / "tg.db"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sqlite_engine.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sqlite_engine.db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert sqlite_engine.db.execute_sql("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert sqlite_engine.db.execute_sql("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_default_home_is_created_private(tmp_path, monkeypatch):
    from tradeguard import Engine

    home = tmp_path / "fresh-home"
    monkeypatch.setenv("TRADEGUARD_HOME", str(home))
    monkeypatch.delenv("TRADEGUARD_DATABASE_URL", raising=False)
    with Engine.open(load_entrypoints=False) as engine:
        assert engine.url == f"sqlite:///{home / 'tradeguard.db'}"
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    assert oct((home / "tradeguard.db").stat().st_mode & 0o777) == "0o600"


def test_hot_path_rows_read_like_peewee_rows(engine):
    """`storage.rows` (pre-built SQL of the order path) returns the same values as peewee's own reads:
    exact Decimals, aware UTC datetimes, enum members and decoded JSON; a row saved back unchanged
    keeps its stored JSON text byte for byte."""
    from tradeguard.storage import rows

    account = engine.accounts.add("hot", "paper", initial_capital="1000.50", settings={"b": [1, "2"], "a": None})
    with use_database(engine.db):
        fast, slow = rows.get(Account, account.id), Account.get_by_id(account.id)
        for field in Account._meta.sorted_fields:
            assert getattr(fast, field.name) == getattr(slow, field.name), field.name
        assert fast.settings == {"a": None, "b": [1, "2"]} and fast.current_cash == Decimal("1000.5")
        assert fast.created_at.tzinfo is timezone.utc and fast.mode is slow.mode
        text = "SELECT settings FROM account WHERE id = " + engine.db.param
        before = engine.db.execute_sql(text, (account.id,)).fetchone()[0]
        untouched = rows.get(Account, account.id)
        untouched.max_leverage = untouched.max_leverage  # a change elsewhere in the row
        rows.save(untouched)
        assert engine.db.execute_sql(text, (account.id,)).fetchone()[0] == before
        changed = rows.get(Account, account.id)
        changed.settings["c"] = 3  # decoded on access: changes in place are kept like any dict
        rows.save(changed)
        assert Account.get_by_id(account.id).settings == {"a": None, "b": [1, "2"], "c": 3}


def test_pre_built_statement_conversions_store_what_peewee_stores(engine):
    """`fields.db_converter` (the order path's inlined conversions) gives exactly ``field.db_value`` for
    every field of every table, for the common values and the odd ones (and raises where it raises)."""
    from datetime import timedelta

    from tradeguard.storage import backend_of
    from tradeguard.storage.fields import db_converter
    from tradeguard.storage.models import ALL_MODELS
    from tradeguard.types import OrderStatus, Side

    berlin = timezone(timedelta(hours=1))
    samples = [None, 0, 7, True, "7", "abc", "1.50", Decimal("1.50"), Decimal("-0"), Decimal("1E-18"),
               Decimal("NaN"), 1.5, datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
               datetime(2026, 1, 2, 3, 4, 5, tzinfo=berlin), datetime(2026, 1, 2), "2026-01-02T03:04:05Z",
               Side.BUY, OrderStatus.FILLED, "buy", {"b": [1, Decimal("2.0")]}]

    def outcome(function, value):
        try:
            return ("ok", function(value))
        except Exception as exc:  # noqa: BLE001 - the same failure is what is compared
            return ("error", type(exc))

    with use_database(engine.db):
        backend = backend_of(engine.db)
        checked = 0
        for model in ALL_MODELS:
            for field in model._meta.sorted_fields:
                fast = db_converter(field, backend)
                for value in samples:
                    expected, got = outcome(field.db_value, value), outcome(fast, value)
                    assert got == expected and type(got[1]) is type(expected[1]), (model.__name__, field.name, value)
                    checked += 1
    assert checked > 1000

"""`tradeguard replay`: the stored books rebuilt from the fills alone."""

from __future__ import annotations

from report_helpers import D, at, fill, position, round_trip
from tradeguard.storage import use_database
from tradeguard.storage.models import Position, Trade


def _open(cli):
    from tradeguard import Engine

    return Engine.open(cli.db_url, home=cli.home, load_entrypoints=False)


def test_consistent_books_replay_ok(cli):
    with _open(cli) as engine:
        round_trip(engine)
        result = engine.reports.replay("main")
        assert result.ok and result.fills_replayed == 4 and result.fills_checked == 4
    data = cli.json("replay", "main")
    assert data["ok"] is True and data["differences"] == []
    assert data["positions"][0]["realized_pnl"] == {"stored": "5", "rebuilt": "5"}
    text = cli("replay", "main")
    assert text.exit_code == 0 and "ok: 4 fills replayed" in text.output


def test_a_flip_from_long_to_short_and_back_replays_ok(engine):
    account = engine.accounts.add("flip", "paper", initial_capital="1000")
    fill(engine, account, at(1), "buy", "2", "100")
    fill(engine, account, at(2), "sell", "3", "110", realized="20")  # closes 2 (+20), opens 1 short at 110
    fill(engine, account, at(3), "buy", "0.5", "105", realized="2.5")  # short covers half: (110 - 105) x 0.5
    position(engine, account, "BTC/USDT", "-0.5", "110", "22.5")
    assert engine.reports.replay("flip").ok


def test_a_corrupted_position_is_reported_and_exits_4(cli):
    with _open(cli) as engine:
        round_trip(engine)
        with use_database(engine.db):
            Position.update(quantity=D("0.5"), realized_pnl=D("7")).execute()
    result = cli("replay", "main")
    assert result.exit_code == 4, result.output
    assert "DIFFERENCE position BTC/USDT spot quantity: stored 0.5, rebuilt 0" in result.stdout
    assert "realized_pnl: stored 7, rebuilt 5" in result.stdout
    assert result.stderr.strip() == "error: replay of main: 2 difference(s) between the stored books and the fills"
    data = cli.json("replay", "main", expect=4)
    assert data["ok"] is False
    assert {(d["field"], d["stored"], d["rebuilt"]) for d in data["differences"]} == {
        ("quantity", "0.5", "0"), ("realized_pnl", "7", "5")}


def test_a_fill_whose_pnl_was_altered_is_named(engine):
    round_trip(engine)
    with use_database(engine.db):
        trade = Trade.select().where(Trade.realized_pnl == D(15)).get()
        Trade.update(realized_pnl=D("16")).where(Trade.id == trade.id).execute()
    result = engine.reports.replay("main")
    fills = [d for d in result.differences if d["kind"] == "fill"]
    assert [(d["exchange_trade_id"], d["stored"], d["rebuilt"]) for d in fills] == [
        (trade.exchange_trade_id, D(16), D(15))]


def test_missing_and_unexplained_positions_are_differences(engine):
    account = round_trip(engine)
    fill(engine, account, at(4), "buy", "1", "50", symbol="ETH/USDT")  # no ETH position stored
    position(engine, account, "SOL/USDT", "3", "20", "0")  # no SOL fills
    notes = {(d["symbol"], d["note"]) for d in engine.reports.replay("main").differences}
    assert notes == {("ETH/USDT", "the fills imply a position that is not stored"),
                     ("SOL/USDT", "no fills explain this position")}


def test_until_checks_fills_only_and_since_limits_the_checked_fills(engine):
    round_trip(engine)
    with use_database(engine.db):
        Position.update(quantity=D("9")).execute()
    early = engine.reports.replay("main", until="2026-01-02T09:00Z")
    assert early.ok and not early.positions_compared and early.fills_replayed == 2
    late = engine.reports.replay("main", since="2026-01-03")
    assert late.fills_replayed == 4 and late.fills_checked == 1 and not late.ok


def test_replay_bad_input(sqlite_cli):
    assert sqlite_cli("init").exit_code == 0
    missing = sqlite_cli("replay", "ghost")
    assert missing.exit_code == 2 and "no account named 'ghost'" in missing.stderr
    bad = sqlite_cli("replay", "ghost", "--since", "2026-02-01", "--until", "2026-01-01")
    assert bad.exit_code == 2 and "--until must be later than --since" in bad.stderr


def test_orders_placed_through_the_engine_replay_ok_and_report_agrees(engine):
    from orders_helpers import paper_account

    venue = paper_account(engine, "live-path", price="100", capital="10000")
    engine.place_order("live-path", "BTC/USDT", "buy", "2")
    venue.set_price("BTC/USDT", "110")
    engine.place_order("live-path", "BTC/USDT", "sell", "1")
    venue.set_price("BTC/USDT", "90")
    engine.place_order("live-path", "BTC/USDT", "sell", "0.5")
    engine.place_order("live-path", "ETH/USDT", "buy", "1", type="limit", price="1")  # rests, no fill
    result = engine.reports.replay("live-path")
    assert result.ok, result.differences
    assert result.fills_replayed == 3
    with use_database(engine.db):
        trades = list(Trade.select())
        stored = Position.get(Position.symbol == "BTC/USDT")
        account = engine.accounts.get("live-path")
    summary = engine.reports.report("live-path").summary
    assert summary["realized_pnl"] == sum(t.realized_pnl for t in trades) == stored.realized_pnl
    assert summary["fees"] == sum(t.fee for t in trades)
    # the report's cash model is the order path's: equity = stored cash + position at the last fill price
    last_price = trades[-1].price
    assert summary["equity_end"] == account.current_cash + stored.quantity * last_price
    assert summary["total_pnl"] == summary["equity_end"] - 10000

"""Performance reports: figures checked against hand-computed examples."""

from __future__ import annotations

import math
import statistics
import struct

import pytest

from report_helpers import D, at, cash_flow, emergency, fill, position, rejection, round_trip
from tradeguard.reporting import metrics
from tradeguard.storage import use_database
from tradeguard.storage.models import PositionSnapshot


# -- the pure figures ------------------------------------------------------------------------


def test_sharpe_and_sortino_on_a_hand_computed_series():
    # returns 3% and -1%: mean 1%, sample std sqrt(0.0008) = 0.0282843; downside sqrt(0.0001 / 2) = 0.0070711
    returns = [D("0.03"), D("-0.01")]
    assert metrics.sharpe(returns) == D("6.75462804")  # 0.01 / 0.0282842712 * sqrt(365) = 6.754628043
    assert metrics.sortino(returns) == D("27.01851217")  # 0.01 / 0.0070710678 * sqrt(365) = 27.018512172
    # an independent float computation agrees
    assert float(metrics.sharpe(returns)) == pytest.approx(0.01 / statistics.stdev([0.03, -0.01]) * math.sqrt(365))
    assert float(metrics.sortino(returns)) == pytest.approx(0.01 / math.sqrt(0.0001 / 2) * math.sqrt(365))


def test_ratios_need_two_returns_and_some_variation():
    assert metrics.sharpe([D("0.01")]) is None
    assert metrics.sharpe([D("0.01"), D("0.01")]) is None  # no variation
    assert metrics.sortino([D("0.01"), D("0.02")]) is None  # no losing day
    assert metrics.sharpe([D("0.01"), D("-0.01")]) == 0


def test_max_drawdown_finds_the_deepest_fall_not_the_last():
    dd = metrics.max_drawdown([D(100), D(120), D(90), D(130), D(117)])
    assert (dd.amount, dd.fraction, dd.peak_index, dd.trough_index) == (D(30), D("0.25"), 1, 2)
    assert metrics.max_drawdown([D(1), D(2), D(3)]).amount == 0


def test_trade_stats_count_break_even_as_closed_but_neither_win_nor_loss():
    stats = metrics.trade_stats([D(15), D(-10), D(0), D(5)])
    assert (stats.closed, stats.wins, stats.losses) == (4, 2, 1)
    assert stats.win_rate == D("0.5")
    assert stats.profit_factor == D(2)  # (15 + 5) / 10
    assert (stats.average_win, stats.average_loss) == (D(10), D(-10))
    assert metrics.trade_stats([D(3)]).profit_factor is None  # nothing lost: no finite factor


def test_a_deposit_is_not_a_return():
    # equity 1000 -> 2010 on a day with a 1000 deposit: 10 earned on 2000 at work
    assert metrics.daily_return(D(1000), D(2010), D(1000)) == D("0.005")
    assert metrics.daily_return(D(0), D(0), D(0)) is None


# -- a report from stored rows ---------------------------------------------------------------
#
# Account "main", 10000 USDT initial capital, fees in USDT:
#   01-01 10:00 buy  1 BTC @ 100, fee 0.1     cash  9899.9   holdings 100  equity  9999.9
#   01-01 12:00 buy  1 BTC @ 110, fee 0.11    cash  9789.79  holdings 220  equity 10009.79  (avg cost 105)
#   01-02 08:00 deposit 1000                   cash 10789.79                equity 11009.79
#   01-02 10:00 sell 1 BTC @ 120, fee 0.12    realized +15  cash 10909.67 holdings 120 equity 11029.67
#   01-03 10:00 sell 1 BTC @ 95,  fee 0.095   realized -10  cash 11004.575 flat        equity 11004.575
# realized 5, fees 0.425, net 4.575 = equity change less the deposit; volume 425;
# 2 closing fills: 1 win (15), 1 loss (-10): win rate 0.5, profit factor 1.5;
# drawdown on equity less the deposit: peak 10029.67 -> 10004.575 = 25.095.
# daily returns: 9.79 / 10000, 19.88 / (10009.79 + 1000), -25.095 / 11029.67.


def test_report_figures_match_the_hand_computed_example(engine):
    round_trip(engine)
    s = engine.reports.report("main").summary
    assert (s["trades"], s["buys"], s["sells"]) == (4, 2, 2)
    assert s["volume"] == D("425")
    assert s["fees"] == D("0.425")
    assert s["realized_pnl"] == D("5")
    assert s["net_realized_pnl"] == D("4.575")
    assert s["unrealized_pnl"] == 0
    assert s["equity_start"] == D("10000") and s["equity_end"] == D("11004.575")
    assert s["cash_flows"] == D("1000")
    assert s["total_pnl"] == D("4.575")
    assert (s["closed_trades"], s["wins"], s["losses"]) == (2, 1, 1)
    assert s["win_rate"] == D("0.5")
    assert s["profit_factor"] == D("1.5")
    assert (s["average_win"], s["average_loss"]) == (D("15"), D("-10"))
    assert s["max_drawdown"] == D("25.095")
    assert s["max_drawdown_pct"] == D("0.00250208")  # 25.095 / 10029.67 = 0.0025020763...
    assert s["days"] == 3


def test_report_daily_returns_exclude_the_deposit_and_give_sharpe(engine):
    round_trip(engine)
    report = engine.reports.report("main")
    returns = [row["return"] for row in report.daily]
    expected = [D("9.79") / D("10000"), D("19.88") / D("11009.79"), D("-25.095") / D("11029.67")]
    assert [r.quantize(D("1e-20")) for r in returns] == [e.quantize(D("1e-20")) for e in expected]
    floats = [float(e) for e in expected]
    sharpe = statistics.mean(floats) / statistics.stdev(floats) * math.sqrt(365)
    downside = math.sqrt(sum(min(r, 0) ** 2 for r in floats) / 3)
    assert float(report.summary["sharpe"]) == pytest.approx(sharpe, abs=1e-7)
    assert float(report.summary["sortino"]) == pytest.approx(statistics.mean(floats) / downside * math.sqrt(365),
                                                               abs=1e-7)


def test_report_period_filters_fills_but_keeps_their_history(engine):
    round_trip(engine)
    s = engine.reports.report("main", since="2026-01-02", until="2026-01-03").summary
    assert s["trades"] == 1 and s["realized_pnl"] == D("15") and s["fees"] == D("0.12")
    # the period starts with the BTC bought earlier, marked at its last price (110)
    assert s["equity_start"] == D("10009.79")
    assert s["unrealized_pnl"] == D("15")  # 1 BTC, cost 105, last price 120
    assert s["exposure"][0]["quantity"] == 1 and s["exposure"][0]["notional"] == D("120")
    assert s["total_pnl"] == D("19.88")  # 11029.67 - 10009.79 - 1000
    assert s["days"] == 1


def test_open_positions_are_marked_to_snapshots_and_given_marks(engine):
    account = engine.accounts.add("open", "paper", initial_capital="1000")
    fill(engine, account, at(1), "buy", "2", "50", symbol="ETH/USDT")
    fill(engine, account, at(1, 11), "sell", "1", "20", symbol="SOL/USDT")  # a short
    with use_database(engine.db):
        PositionSnapshot.create(account=account.id, symbol="ETH/USDT", quantity=D(2), average_cost=D(50),
                                mark_price=D("55"), source="sync", taken_at=at(2))
    s = engine.reports.report("open").summary
    assert s["unrealized_pnl"] == D("10")  # ETH (55 - 50) x 2 + SOL short at its own price 0
    assert s["equity_end"] == D("1010")  # cash 1000 - 100 + 20, + 2 x 55 - 1 x 20
    exposure = {row["symbol"]: row for row in s["exposure"]}
    assert exposure["SOL/USDT"]["quantity"] == D(-1)
    assert exposure["ETH/USDT"]["share"] == D("0.84615385")  # 110 / 130
    marked = engine.reports.report("open", marks={"ETH/USDT": "60", "SOL/USDT": "18"}).summary
    assert marked["unrealized_pnl"] == D("22")  # 2 x 10 + (-1) x (18 - 20)


def test_fees_in_the_base_asset_are_valued_and_reduce_the_position(engine):
    account = engine.accounts.add("basefee", "paper", initial_capital="1000")
    fill(engine, account, at(1), "buy", "1", "100", fee="0.001", fee_currency="BTC")
    fill(engine, account, at(1, 11), "buy", "1", "100", fee="0.5", fee_currency="BNB")
    s = engine.reports.report("basefee").summary
    assert s["fees"] == D("0.1")  # 0.001 BTC at 100
    assert s["fees_other"] == {"BNB": D("0.5")}
    assert s["exposure"][0]["quantity"] == D("1.999")


def test_risk_rejections_by_rule_and_emergency_stops(engine):
    account = round_trip(engine)
    other = engine.accounts.add("other", "paper")
    rejection(engine, account, at(2), "max_position_size")
    rejection(engine, account, at(2, 11), "max_position_size")
    rejection(engine, account, at(2, 12), "max_daily_loss")
    rejection(engine, account, at(2, 13), "max_daily_loss", event_type="WARNING")
    rejection(engine, other, at(2), "max_leverage")
    rejection(engine, account, at(5), "max_leverage")  # outside the period below
    emergency(engine, account, at(2, 14), reason="daily loss")
    emergency(engine, None, at(3, 1), reason="installation stop")
    emergency(engine, other, at(3, 2))
    s = engine.reports.report("main", until="2026-01-04").summary
    assert s["risk_rejections"] == {"max_daily_loss": 1, "max_position_size": 2}
    assert s["risk_warnings"] == {"max_daily_loss": 1}
    assert [(e["reason"], e["scope"]) for e in s["emergency_stops"]] == [("daily loss", "account"),
                                                                          ("installation stop", "installation")]
    assert s["days"] == 3


def test_an_account_without_activity_reports_zeros(engine):
    engine.accounts.add("idle", "paper", initial_capital="500")
    s = engine.reports.report("idle").summary
    assert s["trades"] == 0 and s["volume"] == 0 and s["total_pnl"] == 0
    assert s["win_rate"] is None and s["sharpe"] is None and s["equity_end"] == D("500")


# -- CLI -------------------------------------------------------------------------------------


def _seed_cli(cli):
    from tradeguard import Engine

    with Engine.open(cli.db_url, home=cli.home, load_entrypoints=False) as engine:
        round_trip(engine)
        rejection(engine, engine.accounts.get("main"), at(2), "max_position_size")
        engine.accounts.add("second", "paper", initial_capital="50")


def test_cli_report_json_has_exact_decimals(cli):
    _seed_cli(cli)
    data = cli.json("report", "main")
    assert data["realized_pnl"] == "5" and data["fees"] == "0.425" and data["total_pnl"] == "4.575"
    assert data["win_rate"] == "0.5" and data["profit_factor"] == "1.5"
    assert data["risk_rejections"] == {"max_position_size": 1}
    assert "sqrt(365)" in data["annualisation"]
    assert [row["date"] for row in data["daily_returns"]] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    everything = cli.json("report", "--all")
    assert [r["account"] for r in everything["accounts"]] == ["main", "second"]


def test_cli_report_table_is_readable(sqlite_cli):
    _seed_cli(sqlite_cli)
    result = sqlite_cli("report", "main")
    assert result.exit_code == 0, result.output
    for text in ("win rate", "50.00%", "profit factor", "1.5", "4.575", "max drawdown", "sqrt(365)",
                 "max_position_size"):
        assert text in result.output
    summary = sqlite_cli("report", "--all")
    assert summary.exit_code == 0 and "second" in summary.output


@pytest.mark.parametrize("args, message", [
    ((), "give an ACCOUNT or --all"),
    (("main", "--all"), "give an ACCOUNT or --all"),
    (("nobody",), "no account named 'nobody'"),
    (("main", "--since", "yesterday-ish"), "since: expected an ISO date"),
    (("main", "--since", "2026-01-03", "--until", "2026-01-02"), "--until must be later than --since"),
    (("--all", "--plot", "x.png"), "--plot draws one account"),
    (("main", "--plot", "x.png", "--plot-size", "big"), "--plot-size"),
    (("main", "--plot", "/no-such-dir/x.png"), "--plot: cannot write"),
])
def test_cli_report_bad_input_exits_2_with_one_line(sqlite_cli, args, message):
    _seed_cli(sqlite_cli)
    result = sqlite_cli("report", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_cli_report_plot_draws_a_png_of_the_requested_size(sqlite_cli, tmp_path):
    pytest.importorskip("matplotlib")
    _seed_cli(sqlite_cli)
    out = tmp_path / "equity.png"
    result = sqlite_cli("report", "main", "--plot", str(out))
    assert result.exit_code == 0, result.output
    assert _png_size(out) == (1200, 700)
    small = tmp_path / "small.png"
    assert sqlite_cli("report", "main", "--plot", str(small), "--plot-size", "640x400").exit_code == 0
    assert _png_size(small) == (640, 400)
    # a picture is more than an empty canvas: many distinct colours (line, markers, shading)
    from PIL import Image

    colours = Image.open(out).convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 50


def test_unexplained_balance_changes_move_equity_by_their_direction_and_are_not_returns(engine):
    from tradeguard.storage.models import CashFlow

    account = engine.accounts.add("flows", "paper", initial_capital="1000")
    with use_database(engine.db):
        for n, (note, amount) in enumerate([("in: USDT balance changed by 50", "50"),
                                            ("out: USDT balance changed by -20", "20")]):
            CashFlow.create(account=account.id, kind="UNEXPLAINED", asset="USDT", amount=D(amount), source="sync",
                            note=note, occurred_at=at(1 + n))
    cash_flow(engine, account, at(3), "WITHDRAWAL", "100")
    report = engine.reports.report("flows")
    assert report.summary["cash_flows"] == D("-70") and report.summary["equity_end"] == D("930")
    assert report.summary["total_pnl"] == 0 and report.summary["max_drawdown"] == 0
    assert all(row["return"] == 0 for row in report.daily)


def test_without_initial_capital_the_first_synced_balance_opens_the_books(engine):
    from tradeguard.storage.models import BalanceSnapshot

    account = engine.accounts.add("synced", "paper")
    with use_database(engine.db):
        BalanceSnapshot.create(account=account.id, asset="USDT", free=D(500), used=D(0), total=D(500),
                               source="sync", taken_at=at(1, 9))
    fill(engine, account, at(1, 10), "buy", "1", "100")
    fill(engine, account, at(2, 10), "sell", "1", "110", realized="10")
    s = engine.reports.report("synced").summary
    assert s["capital_base"] == "first synced USDT balance"
    assert (s["equity_start"], s["equity_end"], s["total_pnl"]) == (D(0), D(510), D(10))
    assert engine.reports.report("synced").daily[1]["return"] == D("0.02")  # 10 on 500


def test_positions_lists_open_stored_positions(engine):
    account = round_trip(engine)
    position(engine, account, "ETH/USDT", "2", "50", "0")
    assert [(p["symbol"], p["quantity"]) for p in engine.reports.positions("main")] == [("ETH/USDT", D(2))]
    assert len(engine.reports.positions("main", include_flat=True)) == 2


def test_since_accepts_a_duration_ago(engine):
    from datetime import timedelta

    from tradeguard.clock import utcnow

    account = engine.accounts.add("recent", "paper", initial_capital="100")
    fill(engine, account, utcnow() - timedelta(days=3), "buy", "1", "10")
    fill(engine, account, utcnow() - timedelta(hours=1), "sell", "1", "12", realized="2")
    s = engine.reports.report("recent", since="2d").summary
    assert s["trades"] == 1 and s["realized_pnl"] == 2


def test_a_period_ending_in_the_future_counts_days_only_up_to_today(engine):
    from tradeguard.clock import utcnow

    account = engine.accounts.add("future", "paper", initial_capital="100")
    fill(engine, account, utcnow(), "buy", "1", "10")
    report = engine.reports.report("future", since=utcnow().date().isoformat(), until="2999-01-01")
    assert report.summary["days"] == 1


def test_plot_without_matplotlib_is_a_clear_error(sqlite_cli, tmp_path, monkeypatch):
    import sys

    _seed_cli(sqlite_cli)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if the extra were not installed
    result = sqlite_cli("report", "main", "--plot", str(tmp_path / "x.png"))
    assert result.exit_code == 2 and "pip install 'tradeguard[plot]'" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_cli_mark_to_market_values_positions_at_the_venue_price(sqlite_cli):
    from orders_helpers import paper_account
    from tradeguard import Engine

    with Engine.open(None, home=sqlite_cli.home, load_entrypoints=False) as engine:
        venue = paper_account(engine, "mtm", price="100", capital="10000")
        engine.place_order("mtm", "BTC/USDT", "buy", "2")
        venue.set_price("BTC/USDT", "130")
        cost = engine.reports.positions("mtm")[0]["average_cost"]
    last_fill = sqlite_cli.json("report", "mtm")
    assert D(last_fill["unrealized_pnl"]) == (D(last_fill["exposure"][0]["mark_price"]) - cost) * 2
    marked = sqlite_cli.json("report", "mtm", "--mark-to-market")
    assert marked["exposure"][0]["mark_price"] == "130"
    assert D(marked["unrealized_pnl"]) == (D(130) - cost) * 2
    bad = sqlite_cli("report", "--all", "--mark-to-market")
    assert bad.exit_code == 2 and "--mark-to-market" in bad.stderr


def test_wallet_transfers_are_not_counted_as_fills(engine):
    from tradeguard.storage.models import Trade

    account = round_trip(engine)
    with use_database(engine.db):  # an on-chain transfer row, as the wallet service records it
        Trade.create(account=account.id, exchange_trade_id="wallet:0xabc", exchange_timestamp=at(2, 9), symbol="ETH",
                     side="sell", price=D("0"), quantity=D("0.5"), tx_hash="0x" + "ab" * 32,
                     settlement_status="confirmed")
    s = engine.reports.report("main").summary
    assert (s["trades"], s["sells"], s["volume"]) == (4, 2, D("425"))
    assert engine.reports.replay("main").ok

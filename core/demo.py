"""``tradeguard demo``: the moving-average bot on the paper exchange, in a throwaway home."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Callable

from tradeguard.money import plain
from tradeguard.storage import use_database
from tradeguard.storage.models import Account, RiskLog, Trade

DEMO_ACCOUNT = "demo"
DEMO_BOT = "tradeguard.bots.sma"


@dataclass
class DemoResult:
    home: str
    ticks: int
    orders: int
    fills: int
    refused: int
    risk_rejections: int
    realized_pnl: Decimal
    fees: Decimal
    audit: str

    def lines(self) -> list[str]:
        return [
            f"demo finished in {self.home}",
            f"  ticks            {self.ticks}",
            f"  orders           {self.orders} ({self.refused} refused by the guard)",
            f"  fills            {self.fills}",
            f"  realized PnL     {_cents(self.realized_pnl)} USDT (fees {_cents(self.fees)})",
            f"  risk rejections  {self.risk_rejections}",
            f"  audit            {self.audit}",
        ]


def _cents(value: Decimal) -> str:
    """Money for a summary line: rounded to 0.0001 (the JSON output keeps the exact figure)."""
    return plain(value.quantize(Decimal("0.0001")))


def run_demo(ticks: int = 300, home: str | None = None, echo: Callable[[str], None] = print,
             verbose: bool = False) -> DemoResult:
    """Create a paper account in *home* (a new temporary directory by default) and run the SMA bot."""
    from tradeguard.engine import Engine
    from tradeguard.runner import Runner

    home_path = Path(home) if home else Path(tempfile.mkdtemp(prefix="tradeguard-demo-"))
    with Engine.open(f"sqlite:///{home_path / 'tradeguard.db'}", home=home_path, load_entrypoints=False) as engine:
        if DEMO_ACCOUNT not in {a.name for a in engine.accounts.list()}:
            engine.accounts.add(DEMO_ACCOUNT, "paper", initial_capital="10000", max_position_size="1000",
                                max_daily_loss="100", actor="demo")
        runner = Runner(engine, DEMO_BOT, DEMO_ACCOUNT, interval=0, ticks=ticks,
                        echo=echo if verbose else (lambda line: None))
        summary = runner.run()
        with use_database(engine.db):
            account = Account.get(Account.name == DEMO_ACCOUNT)
            trades = list(Trade.select().where(Trade.account == account))
            rejections = RiskLog.select().where((RiskLog.account == account) & (RiskLog.event_type == "BLOCK")).count()
        audit_service = getattr(engine, "audit", None)
        if audit_service is not None and hasattr(audit_service, "verify"):
            report = audit_service.verify()
            audit_line = report.message if report.ok else f"FAILED: {report.message}"
        else:
            audit_line = "not verified (audit service unavailable)"
    return DemoResult(
        home=str(home_path),
        ticks=summary.ticks,
        orders=summary.orders,
        fills=len(trades),
        refused=summary.refused,
        risk_rejections=rejections,
        realized_pnl=sum((t.realized_pnl for t in trades), Decimal(0)),
        fees=sum((t.fee for t in trades), Decimal(0)),
        audit=audit_line,
    )

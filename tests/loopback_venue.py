"""An exchange plugin that talks to tests/venue_server.py over loopback HTTP.

Registered as exchange ``loopback``; the server URL comes from the account's
``api_base_url``. Connection failures and timeouts are `VenueUnavailable`
(the outcome is unknown), as a real venue adapter reports them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from tradeguard.errors import VenueRejected, VenueUnavailable
from tradeguard.hookspecs import hookimpl
from tradeguard.types import Balance, Fill, Market, OrderStatus, Ticker, VenueOrder


class LoopbackExchange:
    name = "loopback"
    capabilities = frozenset()

    def __init__(self, config: Any):
        self.base = (config.api_base_url or "").rstrip("/")
        self.testnet = True

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            payload = json.loads(exc.read() or b"{}")
            if exc.code == 404:
                return None
            raise VenueRejected(payload.get("error", "rejected"), code=payload.get("code")) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise VenueUnavailable(f"loopback venue unreachable: {exc}") from None

    @staticmethod
    def _order(data: dict) -> VenueOrder:
        return VenueOrder(client_order_id=data["client_order_id"], exchange_order_id=data["id"], symbol=data["symbol"],
                          side=data["side"], type=data["type"], quantity=Decimal(data["quantity"]),
                          status=OrderStatus(data["status"]),
                          price=Decimal(data["price"]) if data.get("price") else None,
                          filled=Decimal(data["filled"]),
                          average_price=Decimal(data["average_price"]) if data.get("average_price") else None,
                          exchange_status=data["status"])

    def load_markets(self, reload: bool = False):
        return {"BTC/USDT": Market("BTC/USDT", "BTC", "USDT", amount_step=Decimal("0.0001"),
                                   price_step=Decimal("0.01"), min_amount=Decimal("0.0001"))}

    def fetch_ticker(self, symbol: str) -> Ticker:
        data = self._call("GET", f"/ticker?symbol={symbol}")
        last = Decimal(data["last"])
        return Ticker(symbol, last, last, last, datetime.now(timezone.utc))

    def fetch_balance(self):
        return [Balance(b["asset"], Decimal(b["free"]), Decimal(b["used"]), Decimal(b["total"]))
                for b in self._call("GET", "/balance")]

    def fetch_positions(self):
        return []

    def create_order(self, request: Any, client_order_id: str) -> VenueOrder:
        body = {"client_order_id": client_order_id, "symbol": request.symbol, "side": request.side.value,
                "type": request.type.value, "quantity": str(request.quantity),
                "price": str(request.price) if request.price is not None else None}
        return self._order(self._call("POST", "/orders", body))

    def cancel_order(self, symbol: str, exchange_order_id: str | None, client_order_id: str | None) -> VenueOrder:
        if exchange_order_id is None and client_order_id is not None:
            found = self.fetch_order_by_client_id(symbol, client_order_id)
            exchange_order_id = found.exchange_order_id if found else None
        data = self._call("POST", f"/orders/{exchange_order_id}/cancel", {})
        if data is None:
            raise VenueRejected("order not found", code="NOT_FOUND")
        return self._order(data)

    def fetch_order(self, symbol: str, exchange_order_id: str) -> VenueOrder:
        data = self._call("GET", f"/orders/{exchange_order_id}")
        if data is None:
            raise VenueRejected("order not found", code="NOT_FOUND")
        return self._order(data)

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        data = self._call("GET", f"/orders?client_order_id={client_order_id}")
        return self._order(data) if data else None

    def fetch_open_orders(self, symbol: str | None = None):
        return [self._order(o) for o in self._call("GET", "/open_orders")]

    def fetch_my_trades(self, symbol: str | None = None, since: Any = None):
        return [Fill(trade_id=t["id"], symbol=t["symbol"], side=t["side"], price=Decimal(t["price"]),
                     quantity=Decimal(t["quantity"]), timestamp=datetime.fromtimestamp(t["timestamp"], timezone.utc),
                     exchange_order_id=t["order_id"], client_order_id=t["client_order_id"], fee=Decimal(t["fee"]),
                     fee_currency="USDT")
                for t in self._call("GET", "/trades")]

    def close(self) -> None:
        pass


class LoopbackPlugin:
    """Register with ``Engine.open(..., plugins=[LoopbackPlugin()])``."""

    __name__ = "loopback-venue"

    @hookimpl
    def register_exchanges(self, register):
        register("loopback", LoopbackExchange)

"""A tiny venue served over loopback HTTP, for crash tests.

It keeps its state in its own process (not in the tradeguard database and not
in the process being killed) and counts every submission it receives, so a
double send shows as a client order id submitted twice.

    python tests/venue_server.py --port-file PATH [--price 100]

Endpoints (JSON): POST /orders, GET /orders?client_order_id=…, GET /orders/<id>,
POST /orders/<id>/cancel, GET /open_orders, GET /trades, GET /ticker,
GET /balance, GET /stats (submission counts), POST /inject (an order placed
"by hand", outside tradeguard).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Venue:
    def __init__(self, price: Decimal):
        self.price = price
        self.lock = threading.Lock()
        self.orders: dict[str, dict] = {}
        self.by_client: dict[str, str] = {}
        self.submissions: dict[str, int] = {}
        self.trades: list[dict] = []
        self.next_id = 1

    def submit(self, body: dict) -> tuple[int, dict]:
        with self.lock:
            cid = body["client_order_id"]
            self.submissions[cid] = self.submissions.get(cid, 0) + 1
            if cid in self.by_client:
                return 409, {"error": "duplicate client order id", "code": "DUPLICATE"}
            oid = str(self.next_id)
            self.next_id += 1
            qty = Decimal(body["quantity"])
            order = {"id": oid, "client_order_id": cid, "symbol": body["symbol"], "side": body["side"],
                     "type": body["type"], "quantity": str(qty), "price": body.get("price"),
                     "status": "OPEN", "filled": "0", "average_price": None, "timestamp": time.time()}
            if body["type"] == "market":
                order.update(status="FILLED", filled=str(qty), average_price=str(self.price))
                self.trades.append({"id": f"T{oid}", "order_id": oid, "client_order_id": cid, "symbol": body["symbol"],
                                    "side": body["side"], "price": str(self.price), "quantity": str(qty),
                                    "fee": "0", "timestamp": time.time()})
            self.orders[oid] = order
            self.by_client[cid] = oid
            return 200, order


class Handler(BaseHTTPRequestHandler):
    venue: Venue

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        v = self.venue
        with v.lock:
            if url.path == "/orders" and "client_order_id" in query:
                oid = v.by_client.get(query["client_order_id"])
                return self._send(200 if oid else 404, v.orders[oid] if oid else {"error": "not found"})
            if url.path.startswith("/orders/"):
                order = v.orders.get(url.path.split("/")[2])
                return self._send(200 if order else 404, order or {"error": "not found"})
            if url.path == "/open_orders":
                return self._send(200, [o for o in v.orders.values() if o["status"] == "OPEN"])
            if url.path == "/trades":
                return self._send(200, v.trades)
            if url.path == "/ticker":
                return self._send(200, {"symbol": query.get("symbol", "BTC/USDT"), "last": str(v.price)})
            if url.path == "/balance":
                return self._send(200, [{"asset": "USDT", "free": "1000000", "used": "0", "total": "1000000"}])
            if url.path == "/stats":
                return self._send(200, {"submissions": v.submissions, "orders": list(v.orders.values())})
        self._send(404, {"error": "no route"})

    def do_POST(self):
        url = urlparse(self.path)
        v = self.venue
        if url.path == "/orders":
            status, body = v.submit(self._body())
            return self._send(status, body)
        if url.path == "/inject":
            status, body = v.submit(self._body())
            return self._send(status, body)
        if url.path.startswith("/orders/") and url.path.endswith("/cancel"):
            with v.lock:
                order = v.orders.get(url.path.split("/")[2])
                if order and order["status"] == "OPEN":
                    order["status"] = "CANCELED"
                return self._send(200 if order else 404, order or {"error": "not found"})
        self._send(404, {"error": "no route"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--price", default="100")
    args = parser.parse_args()
    Handler.venue = Venue(Decimal(args.price))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())

"""A stub Binance spot API on loopback HTTP, answering with the recorded fixtures.

The real ``ccxt.binance`` class talks to it through an account's
``api_base_url`` (http is allowed for loopback hosts), so the code path is
the one users run; only the venue is fake. Used by the sync CLI tests and by
``bench/sync_many.py``.

- every request waits ``latency`` seconds before the answer (a venue's round trip);
- an API key starting with ``bad-`` gets Binance's real -2015 401 answer;
- ``GET /stats`` returns the request count (not a Binance endpoint).

    python tests/binance_stub.py --latency 0.05 --port-file PATH   # a separate process
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ccxt" / "binance"


def _fixture(name: str) -> tuple[int, Any]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return data.get("status", 200), data.get("body")


class StubBinance:
    """The server; ``start()`` returns its base URL (``http://127.0.0.1:PORT``)."""

    def __init__(self, latency: float = 0.0, *, open_orders: bool = False, trades: bool = False):
        self.latency = latency
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests answered at once: > 1 shows concurrent clients
        self._lock = threading.Lock()
        self._answers = {
            "/api/v3/exchangeInfo": _fixture("exchange_info"),
            "/api/v3/account": _fixture("account"),
            "/api/v3/openOrders": _fixture("open_orders") if open_orders else (200, []),
            "/api/v3/myTrades": _fixture("my_trades") if trades else (200, []),
        }
        self._tickers = {"BTCUSDT": _fixture("ticker_24hr_btcusdt"), "ETHUSDT": _fixture("ticker_24hr_ethusdt")}
        self._server: ThreadingHTTPServer | None = None

    def answer(self, method: str, path: str, query: dict[str, str], api_key: str | None) -> tuple[int, Any]:
        if path == "/stats":
            return 200, {"requests": self.requests}
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            return self._answer(method, path, query, api_key)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, method: str, path: str, query: dict[str, str], api_key: str | None) -> tuple[int, Any]:
        if api_key and api_key.startswith("bad-"):
            return _fixture("error_invalid_api_key")
        if path == "/api/v3/ticker/24hr":
            return self._tickers.get(query.get("symbol", ""), _fixture("error_invalid_symbol"))
        if path == "/api/v3/order" and method == "GET":
            return _fixture("error_order_does_not_exist")
        return self._answers.get(path, (404, {"code": -1, "msg": f"stub: no {method} {path}"}))

    def start(self) -> str:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stall)

            def _reply(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                query.update({k: v[-1] for k, v in parse_qs(body).items()})
                status, payload = stub.answer(self.command, parts.path, query, self.headers.get("X-MBX-APIKEY"))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _reply

            def log_message(self, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.request_queue_size = 256
        self._server = server
        threading.Thread(target=server.serve_forever, name="binance-stub", daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    stub = StubBinance(args.latency)
    url = stub.start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(url)
    os.replace(tmp, args.port_file)
    threading.Event().wait()


if __name__ == "__main__":
    main()

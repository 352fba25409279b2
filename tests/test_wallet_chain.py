"""The ``evm`` wallet against a chain served over loopback JSON-RPC (tests/chain_server.py):
concurrent sends, an on-chain revert, and crashes — a process killed after
recording a transfer but before broadcasting it, and one killed after
broadcasting it, before its receipt — found again by hash and settled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import traceback
import time
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from tradeguard.errors import VenueUnavailable
from tradeguard.storage import use_database
from tradeguard.storage.models import CashFlow, Trade
from wallet_helpers import (
    KNOWN_ADDRESS,
    KNOWN_KEY,
    audit_actions,
    MASTER_KEY,
    TESTER_CHAIN_ID,
    assert_no_key_in_files,
    assert_no_key_in_text,
    deploy_token,
    fund,
    load_chain_server,
    open_engine,
    rpc,
    wei,
)

chain_server = load_chain_server()
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def chain():
    with chain_server.ChainServer(automine=True) as server:
        yield server


@pytest.fixture
def manual_chain():
    with chain_server.ChainServer(automine=False) as server:
        yield server


def connect(url: str) -> Web3:
    return Web3(HTTPProvider(url, request_kwargs={"timeout": 10}))


def new_wallet(engine, url: str, account: str = "alice", **kwargs) -> str:
    engine.accounts.add(account, "paper")
    kwargs.setdefault("generate", True)
    return engine.wallets.add(account, "custom", chain_id=TESTER_CHAIN_ID, rpc_url=url, **kwargs)["address"]


def transfers(engine) -> list[Trade]:
    with use_database(engine.db):
        return list(Trade.select().where(Trade.exchange_trade_id.startswith("wallet:")).order_by(Trade.id))


def test_concurrent_sends_from_two_engines_get_distinct_nonces(chain, db_url, home):
    """Eight threads on two Engines sharing one database (SQLite file, or PostgreSQL)."""
    url = db_url
    w3 = connect(chain.url)
    with open_engine(url, home) as first, open_engine(url, home) as second:
        address = new_wallet(first, chain.url)
        fund(w3, address, wei("10"))
        recipients = [Account.create().address for _ in range(4)]
        results, errors = [], []

        def worker(engine, index):
            try:
                for round_ in range(2):
                    results.append(engine.wallets.send("alice", recipients[index % 4], f"0.0{index + 1}",
                                                       actor=f"bot{index}", timeout=60))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append("".join(traceback.format_exception(exc)))

        threads = [threading.Thread(target=worker, args=(first if i % 2 else second, i)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == [], errors[0] if errors else ""
        assert sorted(r["nonce"] for r in results) == list(range(16))
        assert {r["status"] for r in results} == {"confirmed"}
        assert w3.eth.get_transaction_count(address) == 16
        expected = {r: 0 for r in recipients}
        for index in range(8):
            expected[recipients[index % 4]] += 2 * wei(f"0.0{index + 1}")
        assert {r: w3.eth.get_balance(r) for r in recipients} == expected
        rows = transfers(first)
        assert len(rows) == 16 and len({r.tx_hash for r in rows}) == 16
        # a restart (a new Engine) continues from the stored nonce
    with open_engine(url, home) as again:
        assert again.wallets.send("alice", recipients[0], "0.001")["nonce"] == 16


def test_a_transfer_mined_as_reverted_is_recorded_with_its_gas(manual_chain, tmp_path, home):
    from tradeguard.wallets import TransferReverted

    w3 = connect(manual_chain.url)
    with open_engine(f"sqlite:///{tmp_path / 'r.db'}", home) as engine:
        address = new_wallet(engine, manual_chain.url)
        fund(w3, address, wei("1"))
        rpc(w3, "tg_setAutomine", True)
        token = deploy_token(w3, address, 10 * 10**6)
        rpc(w3, "tg_setAutomine", False)
        engine.wallets.set("alice", tokens={"TUSD": token.address})
        dest = Account.create().address
        # both transfers pass the checks against the latest block; together they overspend
        first = engine.wallets.send("alice", dest, "8", "TUSD", wait=False)
        assert first["status"] == "pending"
        miner = threading.Thread(target=lambda: (time.sleep(0.5), rpc(w3, "tg_mine")))
        miner.start()
        with pytest.raises(TransferReverted, match="reverted") as info:
            engine.wallets.send("alice", dest, "8", "TUSD", timeout=15)
        miner.join()
        assert info.value.receipt.status == "reverted" and info.value.receipt.gas_used > 21000
        settled = engine.wallets.settle("alice")
        assert [s["status"] for s in settled] == ["confirmed"]
        rows = transfers(engine)
        assert [r.settlement_status for r in rows] == ["confirmed", "reverted"]
        reverted = rows[1]
        receipt = w3.eth.get_transaction_receipt(reverted.tx_hash)
        assert receipt["status"] == 0 and reverted.gas_used == receipt["gasUsed"]
        assert reverted.fee == Decimal(receipt["gasUsed"] * receipt["effectiveGasPrice"]) / 10**18 > 0
        assert token.functions.balanceOf(dest).call() == 8 * 10**6
        with use_database(engine.db):
            assert CashFlow.select().count() == 1  # only the confirmed one moved funds
        # reverted transfers do not count against the daily limit
        engine.wallets.set_limits("alice", daily={"TUSD": "9"})
        assert engine.wallets.limits("alice")["daily_limits"] == {"TUSD": "9"}


# -- crashes: real processes ---------------------------------------------------------------------


def cli_env(home: Path, db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update(TRADEGUARD_HOME=str(home), TRADEGUARD_DATABASE_URL=f"sqlite:///{db}",
               TRADEGUARD_MASTER_KEY=MASTER_KEY, TRADEGUARD_DISABLE_PLUGINS="1", **extra)
    return env


def cli_process(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tradeguard.cli", *args], env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_crash_after_recording_before_broadcast_is_sent_on_settle(chain, tmp_path, home):
    db = tmp_path / "k.db"
    w3 = connect(chain.url)
    with open_engine(f"sqlite:///{db}", home) as engine:
        address = new_wallet(engine, chain.url, private_key=KNOWN_KEY, generate=False)
        fund(w3, address, wei("1"))
    dest = Account.create().address
    proc = cli_process(cli_env(home, db, TRADEGUARD_TEST_CRASH_AT="wallet.before_broadcast"),
                       "wallet", "send", "alice", dest, "0.25", "--yes")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    assert_no_key_in_text(KNOWN_KEY, out, err)
    with open_engine(f"sqlite:///{db}", home) as engine:
        (row,) = transfers(engine)
        assert row.settlement_status == "signed"
        assert w3.eth.get_transaction_count(address, "pending") == 0  # never reached the node
        (settled,) = engine.wallets.settle("alice", timeout=10)
        assert settled["status"] == "confirmed" and settled["tx_hash"] == row.tx_hash and settled["nonce"] == 0
        assert w3.eth.get_balance(dest) == wei("0.25")
        assert engine.wallets.settle("alice") == []  # settled once
        assert engine.wallets.send("alice", dest, "0.25")["nonce"] == 1
    # the same crash, then the bot simply sends again: the stale record goes out first, no nonce gap
    proc = cli_process(cli_env(home, db, TRADEGUARD_TEST_CRASH_AT="wallet.before_broadcast"),
                       "wallet", "send", "alice", dest, "0.125", "--yes")
    assert proc.wait(60) == -signal.SIGKILL
    proc.communicate()
    with open_engine(f"sqlite:///{db}", home) as engine:
        engine.wallets.stale_after = 0
        assert engine.wallets.send("alice", dest, "0.0625")["nonce"] == 3
        assert [(r.audit_data["nonce"], r.settlement_status) for r in transfers(engine)] == [
            (0, "confirmed"), (1, "confirmed"), (2, "confirmed"), (3, "confirmed")]
        assert engine.wallets.settle("alice") == []
        assert "wallet.rebroadcast" in audit_actions(engine)
        assert w3.eth.get_balance(dest) == wei("0.6875") and w3.eth.get_transaction_count(address) == 4
        engine.db.execute_sql("PRAGMA wal_checkpoint(FULL)")
    assert_no_key_in_files(KNOWN_KEY, tmp_path.glob("k.db*"))
    assert_no_key_in_files(KNOWN_KEY, home.rglob("*"))


def test_client_killed_after_sending_is_found_by_hash_and_settled(tmp_path, home):
    db = tmp_path / "s.db"
    with chain_server.ChainServerProcess(automine=False) as server:
        w3 = connect(server.url)
        with open_engine(f"sqlite:///{db}", home) as engine:
            address = new_wallet(engine, server.url)
            fund(w3, address, wei("1"))  # tg_fund mines even in manual mode
        dest = Account.create().address
        proc = cli_process(cli_env(home, db), "wallet", "send", "alice", dest, "0.5", "--yes", "--timeout", "60")
        try:
            deadline = time.monotonic() + 30
            pool: list = []
            while time.monotonic() < deadline and not pool:
                assert proc.poll() is None, proc.communicate()
                pool = rpc(w3, "tg_txpool")
                time.sleep(0.05)
            (pooled,) = pool
            time.sleep(0.3)  # let it record the broadcast; it now waits for a receipt that does not come
            assert proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        with open_engine(f"sqlite:///{db}", home) as engine:
            (row,) = transfers(engine)
            assert row.tx_hash == pooled["hash"] and row.settlement_status in ("signed", "pending")
            (still,) = engine.wallets.settle("alice")  # not mined yet: stays pending, nothing re-sent
            assert still["status"] == "pending" and len(rpc(w3, "tg_txpool")) == 1
            rpc(w3, "tg_mine")
            (done,) = engine.wallets.settle("alice")
            receipt = w3.eth.get_transaction_receipt(row.tx_hash)
            assert done["status"] == "confirmed" and done["block_number"] == receipt["blockNumber"]
            assert done["gas_used"] == receipt["gasUsed"] and Decimal(done["gas_price"]) == receipt["effectiveGasPrice"]
            assert engine.wallets.settle("alice") == []
            with use_database(engine.db):
                assert CashFlow.select().count() == 1
            assert w3.eth.get_balance(dest) == wei("0.5")


def test_a_transaction_the_node_dropped_is_sent_again_by_settle(manual_chain, tmp_path, home):
    w3 = connect(manual_chain.url)
    with open_engine(f"sqlite:///{tmp_path / 'd.db'}", home) as engine:
        address = new_wallet(engine, manual_chain.url, private_key=KNOWN_KEY, generate=False)
        fund(w3, address, wei("1"))
        dest = Account.create().address
        first = engine.wallets.send("alice", dest, "0.1", timeout=0.3)  # no block is mined: no receipt in time
        assert first["status"] == "pending" and first["block_number"] is None
        assert rpc(w3, "tg_dropTransaction", first["tx_hash"]) is True  # the node forgot it
        engine.trading.emergency_stop("alice", reason="test")
        (held,) = engine.wallets.settle("alice")  # HALTED: looked up, not sent again
        assert held["status"] == "pending" and rpc(w3, "tg_txpool") == []
        engine.trading.resume("alice", by="test")
        (still,) = engine.wallets.settle("alice")
        assert still["status"] == "pending" and [e["hash"] for e in rpc(w3, "tg_txpool")] == [first["tx_hash"]]
        assert "wallet.rebroadcast" in audit_actions(engine)
        second = engine.wallets.send("alice", dest, "0.2", wait=False)
        assert second["nonce"] == 1
        rpc(w3, "tg_mine")
        assert [r["status"] for r in engine.wallets.settle("alice")] == ["confirmed", "confirmed"]
        assert w3.eth.get_balance(dest) == wei("0.3")
        # the node forgets a pending transfer and the key signs another transaction with that nonce elsewhere
        third = engine.wallets.send("alice", dest, "0.1", wait=False)
        rpc(w3, "tg_dropTransaction", third["tx_hash"])
        base = w3.eth.get_block("latest")["baseFeePerGas"]
        elsewhere = Account.from_key(KNOWN_KEY).sign_transaction({
            "type": 2, "chainId": TESTER_CHAIN_ID, "nonce": 2, "to": dest, "value": 1, "gas": 21000,
            "maxPriorityFeePerGas": 10**9, "maxFeePerGas": 2 * base + 10**9})
        w3.eth.send_raw_transaction(elsewhere.raw_transaction)
        rpc(w3, "tg_mine")
        (dropped,) = engine.wallets.settle("alice")
        assert dropped["status"] == "dropped" and "nonce was used" in dropped["error"]
        assert engine.wallets.send("alice", dest, "0.05", wait=False)["nonce"] == 3  # the dropped nonce is not reused


def test_node_refusals_and_a_nonce_taken_elsewhere(chain, tmp_path, home, monkeypatch):
    from tradeguard.errors import VenueRejected
    from tradeguard.plugins.evm.wallet import SignedTransfer

    w3 = connect(chain.url)
    outside = Account.create()  # a key the test also uses outside tradeguard
    with open_engine(f"sqlite:///{tmp_path / 'n.db'}", home) as engine:
        new_wallet(engine, chain.url, private_key=outside.key.to_0x_hex(), generate=False)
        fund(w3, outside.address, wei("1"))
        dest = Account.create().address
        base = w3.eth.get_block("latest")["baseFeePerGas"]
        raw = outside.sign_transaction({"type": 2, "chainId": TESTER_CHAIN_ID, "nonce": 0, "to": dest, "value": 5,
                                        "gas": 21000, "maxPriorityFeePerGas": 10**9, "maxFeePerGas": 2 * base + 10**9})
        signed = SignedTransfer(raw.hash.to_0x_hex(), 0, raw.raw_transaction.to_0x_hex())
        wallet = engine.wallet_for("alice")
        assert wallet.broadcast(signed) == signed.tx_hash  # sent outside tradeguard's books, mined
        with pytest.raises(VenueRejected, match="nonce too low") as info:
            wallet.broadcast(signed)
        assert info.value.code == "nonce_too_low"
        # the node's pending count was read just before the other transaction: the first attempt is refused
        # ("nonce too low"), recorded as failed, and retried once with a fresh count
        real, calls = wallet.pending_nonce, []

        def stale_once() -> int:
            calls.append(1)
            return 0 if len(calls) == 1 else real()

        monkeypatch.setattr(wallet, "pending_nonce", stale_once)
        result = engine.wallets.send("alice", dest, "0.01")
        assert result["status"] == "confirmed" and result["nonce"] == 1
        assert [(r.audit_data["nonce"], r.settlement_status) for r in transfers(engine)] == [(0, "failed"), (1, "confirmed")]
        assert "nonce too low" in transfers(engine)[0].audit_data["error"]
        assert w3.eth.get_balance(dest) == 5 + wei("0.01")



def test_settle_all_goes_on_when_one_node_is_down(manual_chain, tmp_path, home):
    w3 = connect(manual_chain.url)
    other = chain_server.ChainServer(automine=False).__enter__()
    try:
        with open_engine(f"sqlite:///{tmp_path / 'a.db'}", home) as engine:
            for name, server in (("alice", manual_chain), ("bob", other)):
                address = new_wallet(engine, server.url, account=name)
                fund(connect(server.url), address, wei("1"))
                assert engine.wallets.send(name, KNOWN_ADDRESS, "0.1", wait=False)["status"] == "pending"
        other.stop()
        rpc(w3, "tg_mine")
        with open_engine(f"sqlite:///{tmp_path / 'a.db'}", home) as engine:  # a restart: new connections
            results = {r["account"]: r for r in engine.wallets.settle()}
            assert results["alice"]["status"] == "confirmed" and "settle_error" not in results["alice"]
            assert results["bob"]["status"] == "pending" and "unreachable" in results["bob"]["settle_error"]
            with pytest.raises(VenueUnavailable):
                engine.wallets.settle("bob")
    finally:
        other.stop()

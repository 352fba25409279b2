"""Helpers for the EVM wallet tests: chains, an in-process wallet plugin, the ERC-20 fixture, leak checks."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from tradeguard.hookspecs import hookimpl

TESTS_DIR = Path(__file__).resolve().parent
FIXTURE_DIR = TESTS_DIR / "fixtures" / "erc20"
TOKEN_ABI = json.loads((FIXTURE_DIR / "Token.abi.json").read_text())
TOKEN_BIN = (FIXTURE_DIR / "Token.bin").read_text().strip()
TESTER_CHAIN_ID = 131277322940537
MASTER_KEY = "base64:" + base64.b64encode(bytes(range(32))).decode()
#: A fixed private key for the leak tests (never used on a real chain).
KNOWN_KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KNOWN_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
ETHER = 10**18


def load_chain_server() -> Any:
    """tests/chain_server.py, loaded by path (as test_chain_fixtures does)."""
    name = "tg_chain_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS_DIR / "chain_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class InProcessWallets:
    """A plugin registering wallet ``evm-tester``: the real EvmWallet on an in-process web3."""

    name = "evm-tester-plugin"

    def __init__(self, w3: Any):
        self.w3 = w3

    @hookimpl
    def register_wallets(self, register: Any) -> None:
        from tradeguard.plugins.evm.wallet import SETTINGS, EvmWallet

        register("evm-tester", lambda config: EvmWallet(config, web3=self.w3), settings=SETTINGS)


def open_engine(url: str, home: Path, plugins: Iterable[Any] = (), master_key: Any = MASTER_KEY) -> Any:
    from tradeguard import Engine

    return Engine.open(url, home=home, load_entrypoints=False, master_key=master_key, plugins=list(plugins))


def rpc(w3: Any, method: str, *params: Any) -> Any:
    response = w3.provider.make_request(method, list(params))
    if "error" in response:
        raise AssertionError(f"{method} failed: {response['error']}")
    return response["result"]


def fund(w3: Any, address: str, wei: int) -> None:
    """Give *address* some ETH: from a dev account in process, from the faucet over HTTP."""
    if type(w3.provider).__name__ == "EthereumTesterProvider":
        tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": address, "value": wei})
        assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    else:
        rpc(w3, "tg_fund", address, hex(wei))


def deploy_token(w3: Any, holder: str | None = None, amount: int = 0, decimals: int = 6,
                 supply: int = 1_000_000 * 10**6) -> Any:
    """Deploy the fixture ERC-20 from dev account 0 (unlocked) and give *holder* *amount* base units."""
    deployer = w3.eth.accounts[0]
    factory = w3.eth.contract(abi=TOKEN_ABI, bytecode=TOKEN_BIN)
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor("Test USD", "TUSD", decimals, supply).transact({"from": deployer}), timeout=10)
    token = w3.eth.contract(address=receipt.contractAddress, abi=TOKEN_ABI)
    if holder and amount:
        tx = token.functions.transfer(holder, amount).transact({"from": deployer})
        assert w3.eth.wait_for_transaction_receipt(tx, timeout=10)["status"] == 1
    return token


def key_forms(key: str) -> list[bytes]:
    """Every way a hex key could leak: with and without 0x, lower and upper case."""
    body = key.lower().removeprefix("0x")
    return [body.encode(), body.upper().encode(), ("0x" + body).encode()]


def assert_no_key_in_files(key: str, paths: Iterable[Path]) -> None:
    forms = key_forms(key)
    for path in paths:
        if path.is_file():
            data = path.read_bytes()
            for form in forms:
                assert form not in data, f"the private key appears in {path}"


def assert_no_key_in_text(key: str, *texts: str) -> None:
    for text in texts:
        for form in key_forms(key):
            assert form.decode() not in (text or ""), "the private key appears in output"


def audit_actions(engine: Any, prefix: str = "wallet.") -> list[str]:
    from tradeguard.storage import use_database
    from tradeguard.storage.models import AuditLog

    with use_database(engine.db):
        return [r.action for r in AuditLog.select().order_by(AuditLog.seq) if r.action.startswith(prefix)]


def wei(value: Decimal | str) -> int:
    return int(Decimal(value) * ETHER)

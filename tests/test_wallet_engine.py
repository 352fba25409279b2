"""The ``evm`` wallet through the Engine API on a real (in-process) eth-tester chain:
keys through the vault, balances, ETH and ERC-20 transfers with receipts,
reverts, gas checks, the chain-id check, the trading state, the transfer rule,
signing and keystores."""

from __future__ import annotations

import json
import os
import stat
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from web3 import EthereumTesterProvider, Web3

from tradeguard.errors import (
    ConfigError,
    EmergencyStopActive,
    NotFound,
    RiskRejected,
    ValidationError,
    VaultLocked,
    VenueRejected,
)
from tradeguard.plugins.evm.networks import NETWORKS, resolve_network, rpc_url_for
from tradeguard.plugins.evm.wallet import check_address
from tradeguard.storage import use_database
from tradeguard.storage.models import Account as AccountRow, BalanceSnapshot, CashFlow, Credential, RiskLog, Trade
from wallet_helpers import (
    KNOWN_ADDRESS,
    KNOWN_KEY,
    TESTER_CHAIN_ID,
    InProcessWallets,
    assert_no_key_in_files,
    audit_actions,
    deploy_token,
    fund,
    open_engine,
    wei,
)


@pytest.fixture
def w3():
    return Web3(EthereumTesterProvider())


@pytest.fixture
def eng(tmp_path, home, w3):
    with open_engine(f"sqlite:///{tmp_path / 'w.db'}", home, [InProcessWallets(w3)]) as engine:
        engine.accounts.add("alice", "paper")
        yield engine


def add_wallet(engine, account="alice", **kwargs):
    kwargs.setdefault("generate", True)
    return engine.wallets.add(account, "custom", chain_id=TESTER_CHAIN_ID, plugin="evm-tester", **kwargs)


def transfer_rows(engine):
    with use_database(engine.db):
        return list(Trade.select().where(Trade.exchange_trade_id.startswith("wallet:")).order_by(Trade.id))


# -- networks -------------------------------------------------------------------------------


def test_network_table():
    names = {"ethereum", "sepolia", "polygon", "amoy", "bsc", "bsc-testnet", "arbitrum", "base", "optimism"}
    assert names <= set(NETWORKS)
    ids = [n.chain_id for n in NETWORKS.values()]
    assert len(ids) == len(set(ids))
    assert {n.name for n in NETWORKS.values() if n.testnet} == {"sepolia", "amoy", "bsc-testnet"}
    assert (NETWORKS["ethereum"].chain_id, NETWORKS["sepolia"].chain_id, NETWORKS["base"].chain_id) == (1, 11155111, 8453)
    for network in NETWORKS.values():
        assert network.explorer.startswith("https://")
        for symbol, address in network.tokens.items():
            assert check_address(address) == address, (network.name, symbol)  # every built-in address is checksummed
    custom = resolve_network("custom", {"chain_id": "31337", "native_symbol": "GO"})
    assert (custom.chain_id, custom.symbol, custom.testnet) == (31337, "GO", True)
    with pytest.raises(ConfigError, match="chain id"):
        resolve_network("custom", {})
    with pytest.raises(ConfigError, match="Ethereum mainnet"):  # a mainnet can't pose as a custom testnet
        resolve_network("custom", {"chain_id": 1})
    with pytest.raises(ValidationError, match="unknown network"):
        resolve_network("ropsten")


def test_rpc_url_from_setting_or_environment():
    sepolia = NETWORKS["sepolia"]
    assert rpc_url_for(sepolia, {"rpc_url": "https://a.example/v3/KEY"}, {}) == "https://a.example/v3/KEY"
    env = {"TRADEGUARD_RPC_SEPOLIA": "https://b.example"}
    assert rpc_url_for(sepolia, {}, env) == "https://b.example"
    assert rpc_url_for(NETWORKS["bsc-testnet"], {}, {"TRADEGUARD_RPC_BSC_TESTNET": "http://c.example"}) == "http://c.example"
    with pytest.raises(ConfigError, match="TRADEGUARD_RPC_SEPOLIA"):
        rpc_url_for(sepolia, {}, {})


def test_address_checksum_validation():
    assert check_address(KNOWN_ADDRESS.lower()) == KNOWN_ADDRESS
    typo = KNOWN_ADDRESS[:-1] + ("3" if KNOWN_ADDRESS[-1] != "3" else "4")
    wrong_case = KNOWN_ADDRESS[:2] + KNOWN_ADDRESS[2:].swapcase()
    with pytest.raises(ValidationError, match="checksum"):
        check_address(wrong_case)
    assert check_address(typo.lower())  # lower case carries no checksum: valid syntax
    for bad in ("0x123", "2c7536E3605D9C16a7a3D7b1898e529396a65c23", "0xZZ7536E3605D9C16a7a3D7b1898e529396a65c23"):
        with pytest.raises(ValidationError):
            check_address(bad)


# -- keys -----------------------------------------------------------------------------------


def test_add_stores_key_only_in_the_vault(eng, tmp_path):
    info = eng.wallets.add("alice", "custom", chain_id=TESTER_CHAIN_ID, private_key=KNOWN_KEY[2:], plugin="evm-tester")
    assert info == {"account": "alice", "address": KNOWN_ADDRESS, "network": "custom", "chain_id": TESTER_CHAIN_ID,
                    "generated": False}
    with use_database(eng.db):
        row = AccountRow.get(AccountRow.name == "alice")
        assert (row.wallet_address, row.wallet_network) == (KNOWN_ADDRESS, "custom")
        (cred,) = Credential.select().where(Credential.account == row.id)
        assert cred.field == "wallet_private_key" and KNOWN_KEY[2:] not in cred.ciphertext
    assert "wallet.add" in audit_actions(eng)
    eng.db.execute_sql("PRAGMA wal_checkpoint(FULL)")
    assert_no_key_in_files(KNOWN_KEY, tmp_path.glob("w.db*"))
    # one wallet per account, one account per wallet
    with pytest.raises(ValidationError, match="already has wallet"):
        eng.wallets.add("alice", "custom", chain_id=TESTER_CHAIN_ID, generate=True, plugin="evm-tester")
    eng.accounts.add("bob", "paper")
    with pytest.raises(ValidationError, match="already the wallet of account 'alice'"):
        eng.wallets.add("bob", "custom", chain_id=TESTER_CHAIN_ID, private_key=KNOWN_KEY, plugin="evm-tester")


def test_add_refuses_bad_input_and_changes_nothing(eng):
    before = eng.accounts.get("alice")
    cases = [
        (dict(network="custom", chain_id=TESTER_CHAIN_ID, private_key="0x1234"), ValidationError, "64 hex digits"),
        (dict(network="custom", chain_id=TESTER_CHAIN_ID, private_key="0x" + "0" * 64), ValidationError, "not a valid"),
        (dict(network="custom", chain_id=TESTER_CHAIN_ID), ValidationError, "exactly one"),
        (dict(network="custom", generate=True), ConfigError, "chain id"),
        (dict(network="nowhere", generate=True), ValidationError, "unknown network"),
        (dict(network="ethereum", generate=True), ValidationError, "testnet-only"),
        (dict(network="sepolia", generate=True, chain_id=5), ValidationError, "custom only"),
        (dict(network="custom", chain_id=1, generate=True), ConfigError, "mainnet"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message) as info:
            eng.wallets.add("alice", plugin="evm-tester", **kwargs)
        assert "0x1234" not in str(info.value)
    with pytest.raises(NotFound):
        eng.wallets.add("nobody", "sepolia", generate=True)
    after = eng.accounts.get("alice")
    assert after.wallet_address is None and after.settings == before.settings
    with use_database(eng.db):
        assert Credential.select().count() == 0
    assert "wallet.add" not in audit_actions(eng)


def test_mainnet_network_needs_an_account_marked_mainnet(eng):
    eng.accounts.add("main", "paper", mainnet=True)
    info = eng.wallets.add("main", "ethereum", generate=True, rpc_url="https://rpc.example/v3/SECRETKEY")
    assert info["network"] == "ethereum" and info["chain_id"] == 1
    shown = eng.wallets.show("main")
    assert shown["rpc"] == "https://rpc.example/…" and "SECRETKEY" not in json.dumps(shown)
    # an account switched back to testnet cannot use its mainnet wallet: refused before any RPC call
    eng.accounts.set("main", mainnet=False)
    with pytest.raises(ConfigError, match="testnet-only"):
        eng.wallets.balance("main")


def test_the_vault_must_be_unlocked_to_add_a_key(tmp_path, home, w3):
    with open_engine(f"sqlite:///{tmp_path / 'locked.db'}", home, [InProcessWallets(w3)], master_key=None) as engine:
        engine.accounts.add("alice", "paper")
        with pytest.raises(VaultLocked):
            add_wallet(engine)
        assert engine.accounts.get("alice").wallet_address is None


# -- balances and ETH transfers ---------------------------------------------------------------


def test_fund_send_eth_balances_and_receipt(eng, w3):
    address = add_wallet(eng)["address"]
    assert eng.wallets.balance("alice")["balance"] == 0
    fund(w3, address, wei("2"))
    balance = eng.wallets.balance("alice")
    assert balance["balance"] == Decimal("2") and balance["asset"] == "ETH" and balance["decimals"] == 18
    dest = Account.create().address
    result = eng.wallets.send("alice", dest, "0.123456789012345678", actor="test")
    assert result["status"] == "confirmed" and result["nonce"] == 0 and result["to"] == dest
    receipt = w3.eth.get_transaction_receipt(result["tx_hash"])
    assert receipt["status"] == 1 and receipt["blockNumber"] == result["block_number"]
    assert result["gas_used"] == receipt["gasUsed"] == 21000
    assert Decimal(result["gas_price"]) == receipt["effectiveGasPrice"]
    fee = Decimal(receipt["gasUsed"] * receipt["effectiveGasPrice"]) / 10**18
    assert Decimal(result["fee"]) == fee
    assert w3.eth.get_balance(dest) == 123456789012345678  # exact to the wei
    assert eng.wallets.balance("alice")["balance"] == Decimal("2") - Decimal("0.123456789012345678") - fee
    # the second transfer takes the next nonce
    assert eng.wallets.send("alice", dest, "0.5")["nonce"] == 1
    (row, _) = transfer_rows(eng)
    assert (row.tx_hash, row.block_number, row.gas_used, row.settlement_status) == (
        result["tx_hash"], receipt["blockNumber"], 21000, "confirmed")
    assert row.quantity == Decimal("0.123456789012345678") and row.fee == fee and row.fee_currency == "ETH"
    with use_database(eng.db):
        assert [c.kind for c in CashFlow.select()] == ["TRANSFER_OUT", "TRANSFER_OUT"]
        assert BalanceSnapshot.select().where(BalanceSnapshot.source == "chain").count() == 3
    actions = audit_actions(eng)
    assert actions.count("wallet.send") == 2 and actions.count("wallet.settled") == 2
    assert [r.audit_data["nonce"] for r in transfer_rows(eng)] == [0, 1]
    assert [t["tx_hash"] for t in eng.wallets.transfers("alice")][1] == result["tx_hash"]


def test_insufficient_funds_for_gas_is_refused_before_signing(eng, w3):
    address = add_wallet(eng)["address"]
    fund(w3, address, wei("0.001"))
    dest = Account.create().address
    with pytest.raises(VenueRejected, match="insufficient funds for the amount and gas") as info:
        eng.wallets.send("alice", dest, "0.001")  # the whole balance leaves nothing for gas
    assert info.value.code == "insufficient_funds" and "gas" in str(info.value)
    with pytest.raises(VenueRejected, match="insufficient funds for the amount"):
        eng.wallets.send("alice", dest, "5")
    assert transfer_rows(eng) == []
    assert w3.eth.get_transaction_count(address) == 0
    assert eng.wallets.send("alice", dest, "0.0009")["status"] == "confirmed"  # leaves enough for gas


def test_bad_destination_and_amount(eng, w3):
    address = add_wallet(eng)["address"]
    fund(w3, address, wei("1"))
    wrong_case = KNOWN_ADDRESS[:2] + KNOWN_ADDRESS[2:].swapcase()
    for to, amount, message in [(wrong_case, "0.1", "checksum"), ("0x" + "0" * 40, "0.1", "zero address"),
                                ("bob", "0.1", "20-byte hex"), (KNOWN_ADDRESS, "-1", "amount"),
                                (KNOWN_ADDRESS, "0", "amount"), (KNOWN_ADDRESS, "1e-19", "18 decimals"),
                                (KNOWN_ADDRESS, "abc", "amount")]:
        with pytest.raises(ValidationError, match=message):
            eng.wallets.send("alice", to, amount)
    with pytest.raises(ValidationError, match="unknown asset 'DOGE'"):
        eng.wallets.send("alice", KNOWN_ADDRESS, "1", "DOGE")
    assert transfer_rows(eng) == []


def test_wrong_chain_id_is_refused_before_signing(eng, w3, monkeypatch):
    from eth_account.signers.local import LocalAccount

    eng.wallets.add("alice", "custom", chain_id=31337, generate=True, plugin="evm-tester")  # but the node is eth-tester
    address = eng.accounts.get("alice").wallet_address
    fund(w3, address, wei("1"))
    signed = []
    original = LocalAccount.sign_transaction
    monkeypatch.setattr(LocalAccount, "sign_transaction", lambda self, tx: signed.append(tx) or original(self, tx))
    with pytest.raises(ConfigError, match=f"serves chain id {TESTER_CHAIN_ID}.*31337: nothing was signed"):
        eng.wallets.send("alice", KNOWN_ADDRESS, "0.1")
    assert signed == [] and transfer_rows(eng) == []
    assert "wallet.send" not in audit_actions(eng)
    assert w3.eth.get_transaction_count(address, "pending") == 0


# -- ERC-20 ---------------------------------------------------------------------------------------


def test_erc20_balance_transfer_and_revert(eng, w3):
    address = add_wallet(eng)["address"]
    fund(w3, address, wei("1"))
    token = deploy_token(w3, address, 500 * 10**6)
    by_address = eng.wallets.balance("alice", token.address)
    assert by_address["balance"] == Decimal(500) and by_address["asset"] == "TUSD" and by_address["decimals"] == 6
    with pytest.raises(ValidationError, match="unknown asset 'TUSD'"):
        eng.wallets.balance("alice", "TUSD")
    eng.wallets.set("alice", tokens={"tusd": token.address})
    assert eng.wallets.balance("alice", "TUSD")["balance"] == Decimal(500)

    dest = Account.create().address
    result = eng.wallets.send("alice", dest, "12.345678", "TUSD")
    assert result["status"] == "confirmed" and result["asset"] == "TUSD" and result["token"] == token.address
    assert token.functions.balanceOf(dest).call() == 12_345_678
    (event,) = token.events.Transfer().process_receipt(w3.eth.get_transaction_receipt(result["tx_hash"]))
    assert event.args["to"] == dest and event.args["value"] == 12_345_678
    assert result["gas_used"] > 21000
    with pytest.raises(ValidationError, match="more than 6 decimals"):
        eng.wallets.send("alice", dest, "0.0000001", "TUSD")

    # a transfer the token would revert is refused before signing, with the token's reason
    with pytest.raises(VenueRejected, match="would revert: ERC20: transfer amount exceeds balance") as info:
        eng.wallet_for("alice")._estimate_gas({"to": token.address, "value": 0, "data": token.encode_abi(
            "transfer", args=[dest, 10**12])})
    assert info.value.code == "reverted"
    with pytest.raises(VenueRejected, match="insufficient funds: the wallet holds 487.654322 TUSD"):
        eng.wallets.send("alice", dest, "1000", "TUSD")
    assert len(transfer_rows(eng)) == 1 and w3.eth.get_transaction_count(address) == 1


def test_token_holder_without_eth_cannot_pay_gas(eng, w3):
    address = add_wallet(eng)["address"]
    token = deploy_token(w3, address, 10 * 10**6)
    with pytest.raises(VenueRejected, match="insufficient funds for gas: the wallet holds 0 ETH"):
        eng.wallets.send("alice", KNOWN_ADDRESS, "1", token.address)
    assert transfer_rows(eng) == []


# -- the risk gate and the trading state --------------------------------------------------------


def test_halted_account_or_installation_refuses_transfers_and_signatures(eng, w3):
    address = add_wallet(eng)["address"]
    fund(w3, address, wei("1"))
    eng.wallets.set("alice", allow_signing=True)
    eng.trading.emergency_stop("alice", reason="test stop")
    with pytest.raises(EmergencyStopActive, match="HALTED"):
        eng.wallets.send("alice", KNOWN_ADDRESS, "0.1")
    with pytest.raises(EmergencyStopActive):
        eng.wallets.sign_message("alice", "hello")
    eng.trading.resume("alice", by="test")
    assert eng.wallets.send("alice", KNOWN_ADDRESS, "0.1")["status"] == "confirmed"
    eng.trading.emergency_stop(None, reason="everything stops")
    with pytest.raises(EmergencyStopActive, match="installation"):
        eng.wallets.send("alice", KNOWN_ADDRESS, "0.1")
    assert len(transfer_rows(eng)) == 1 and w3.eth.get_transaction_count(address) == 1
    actions = audit_actions(eng)
    assert actions.count("wallet.send_refused") == 2 and "wallet.sign_refused" in actions


def test_daily_limit_and_allow_list(eng, w3):
    address = add_wallet(eng)["address"]
    fund(w3, address, wei("5"))
    friend, stranger = Account.create().address, Account.create().address
    limits = eng.wallets.set_limits("alice", daily={"eth": "1"}, allow=[friend.lower()])
    assert limits == {"rule": "wallet_transfer_limits", "enabled": True, "daily_limits": {"ETH": "1"},
                      "allowed_destinations": [friend]}
    with pytest.raises(RiskRejected, match="not on the account's allow-list"):
        eng.wallets.send("alice", stranger, "0.1")
    eng.wallets.send("alice", friend, "0.6")
    with pytest.raises(RiskRejected, match=r"0.6 sent today \+ 0.5 would exceed 1"):
        eng.wallets.send("alice", friend, "0.5")
    assert eng.wallets.send("alice", friend, "0.4")["status"] == "confirmed"  # exactly the limit
    with use_database(eng.db):
        logs = [(r.event_type, r.rule) for r in RiskLog.select().order_by(RiskLog.id)]
    assert logs.count(("BLOCK", "wallet_transfer_limits")) == 2 and ("WARNING", "wallet_transfer_limits") in logs
    assert len(transfer_rows(eng)) == 2 and w3.eth.get_balance(friend) == wei("1")
    # configured through the risk service too (same table, same schema)
    eng.risk.set("alice", "wallet_transfer_limits", {"daily_limits": "ETH=2"})
    assert eng.wallets.limits("alice")["daily_limits"] == {"ETH": "2"}
    with pytest.raises(ValidationError):
        eng.risk.disable("alice", "wallet_transfer_limits")  # mandatory: configured, never switched off
    with pytest.raises(ValidationError):
        eng.wallets.set_limits("alice", daily={"ETH": "-1"})


def test_mainnet_transfers_fail_closed_without_limits():
    from tradeguard.plugins.evm.rules import TransferContext, TransferLimitsRule
    from tradeguard.types import TransferRequest, Verdict

    rule = TransferLimitsRule()
    request = TransferRequest("a", KNOWN_ADDRESS, Decimal("1"), "ETH")
    context = TransferContext("ETH", KNOWN_ADDRESS, Decimal(0), mainnet=True)
    assert "allow-list" in rule.check(request, context, {}).reason
    assert rule.check(request, context, {}).verdict is Verdict.BLOCK
    only_list = {"allowed_destinations": KNOWN_ADDRESS}
    assert "daily limit" in rule.check(request, context, only_list).reason
    assert rule.check(request, context, {**only_list, "daily_limits": "ETH=1"}).verdict is Verdict.ALLOW
    testnet = TransferContext("ETH", KNOWN_ADDRESS, Decimal(0), mainnet=False)
    assert rule.check(request, testnet, {}).verdict is Verdict.ALLOW
    assert rule.check(object(), None, {}).verdict is Verdict.ALLOW  # orders are not its business


# -- signing --------------------------------------------------------------------------------------


TYPED = {
    "types": {
        "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
        "Login": [{"name": "user", "type": "address"}, {"name": "nonce", "type": "uint256"}],
    },
    "primaryType": "Login",
    "domain": {"name": "Exchange", "chainId": TESTER_CHAIN_ID},
    "message": {"user": KNOWN_ADDRESS, "nonce": 7},
}


def test_signing_is_off_until_enabled_and_audited(eng):
    address = add_wallet(eng)["address"]
    with pytest.raises(ValidationError, match="signing arbitrary data is off"):
        eng.wallets.sign_message("alice", "login 123")
    eng.wallets.set("alice", allow_signing=True)
    signed = eng.wallets.sign_message("alice", "login 123")
    assert Account.recover_message(encode_defunct(text="login 123"), signature=signed["signature"]) == address
    raw = eng.wallets.sign_message("alice", b"\x00\x01")
    assert Account.recover_message(encode_defunct(primitive=b"\x00\x01"), signature=raw["signature"]) == address
    typed = eng.wallets.sign_typed_data("alice", TYPED)
    assert Account.recover_message(encode_typed_data(full_message=TYPED), signature=typed["signature"]) == address
    with pytest.raises(ValidationError, match="chain id 1"):
        eng.wallets.sign_typed_data("alice", {**TYPED, "domain": {"name": "Exchange", "chainId": 1}})
    with pytest.raises(ValidationError, match="typed data"):
        eng.wallets.sign_typed_data("alice", {"message": {}})
    actions = audit_actions(eng)
    assert actions.count("wallet.sign") == 3 and actions.count("wallet.sign_refused") == 2
    from eth_account.messages import _hash_eip191_message
    from tradeguard.storage.models import AuditLog

    with use_database(eng.db):
        payloads = [json.loads(r.payload) for r in AuditLog.select().where(AuditLog.action == "wallet.sign").order_by(AuditLog.seq)]
    assert payloads[0]["digest"] == "0x" + _hash_eip191_message(encode_defunct(text="login 123")).hex()
    assert payloads[0]["signature"] == signed["signature"] and payloads[0]["address"] == address
    assert payloads[2]["kind"] == "eip712" and payloads[2]["primary_type"] == "Login"
    assert payloads[2]["digest"] == "0x" + _hash_eip191_message(encode_typed_data(full_message=TYPED)).hex()
    eng.wallets.set("alice", allow_signing=False)
    with pytest.raises(ValidationError, match="off"):
        eng.wallets.sign_message("alice", "again")


# -- keystores --------------------------------------------------------------------------------------


def test_keystore_export_and_import(eng, tmp_path, home, w3):
    eng.wallets.add("alice", "custom", chain_id=TESTER_CHAIN_ID, private_key=KNOWN_KEY, plugin="evm-tester")
    path = tmp_path / "alice.json"
    with pytest.raises(ValidationError, match="at least 8"):
        eng.wallets.export_keystore("alice", path, "short")
    info = eng.wallets.export_keystore("alice", path, "a good password")
    assert info["address"] == KNOWN_ADDRESS
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    keystore = json.loads(path.read_text())
    assert keystore["version"] == 3 and keystore["address"].lower() == KNOWN_ADDRESS[2:].lower()
    assert keystore["crypto"]["kdf"] == "scrypt" and keystore["crypto"]["kdfparams"]["n"] == 262144  # geth's standard
    assert Account.decrypt(keystore, "a good password").to_0x_hex() == KNOWN_KEY  # other tools read it
    assert_no_key_in_files(KNOWN_KEY, [path])
    with pytest.raises(ValidationError, match="exists"):
        eng.wallets.export_keystore("alice", path, "a good password")
    assert "wallet.export_keystore" in audit_actions(eng)

    with open_engine(f"sqlite:///{tmp_path / 'other.db'}", home / "other", [InProcessWallets(w3)]) as other:
        other.accounts.add("carol", "paper")
        with pytest.raises(ValidationError, match="wrong password"):
            other.wallets.import_keystore("carol", path, "not the password", "custom", chain_id=TESTER_CHAIN_ID,
                                          plugin="evm-tester")
        with pytest.raises(ValidationError, match="no keystore file"):
            other.wallets.import_keystore("carol", tmp_path / "missing.json", "x", "custom")
        assert other.accounts.get("carol").wallet_address is None
        result = other.wallets.import_keystore("carol", path, "a good password", "custom", chain_id=TESTER_CHAIN_ID,
                                               plugin="evm-tester")
        assert result["address"] == KNOWN_ADDRESS
        other.wallets.set("carol", allow_signing=True)
        signature = other.wallets.sign_message("carol", "same key")["signature"]
        assert Account.recover_message(encode_defunct(text="same key"), signature=signature) == KNOWN_ADDRESS
        assert audit_actions(other)[:2] == ["wallet.add", "wallet.import_keystore"]


def test_transfer_records_on_both_backends(db_url, home, w3):
    """The transfer row, nonce state, cash flow and audit entries on SQLite and PostgreSQL."""
    with open_engine(db_url, home, [InProcessWallets(w3)]) as engine:
        engine.accounts.add("alice", "paper")
        address = add_wallet(engine)["address"]
        fund(w3, address, wei("1"))
        engine.wallets.set_limits("alice", daily={"ETH": "0.5"})
        result = engine.wallets.send("alice", KNOWN_ADDRESS, "0.000000000000000001")
        assert result["status"] == "confirmed"
        with pytest.raises(RiskRejected):
            engine.wallets.send("alice", KNOWN_ADDRESS, "0.5")
        (row,) = transfer_rows(engine)
        assert row.quantity == Decimal("1E-18") and row.gas_used == 21000 and row.block_number == result["block_number"]
        assert row.audit_data["nonce"] == 0 and row.audit_data["from"] == address
        with use_database(engine.db):
            assert CashFlow.get().amount == Decimal("1E-18")
        report = engine.audit.verify()
        assert report.ok and report.keyed, report.message  # the wallet's entries are part of the sealed chain


def test_mainnet_wallet_fails_closed_then_checks_the_chain(eng, w3):
    """A mainnet wallet (account marked mainnet) is refused until limits and an allow-list exist; then
    the RPC's chain id (eth-tester's, not 1) stops it before signing."""
    eng.accounts.add("main", "paper", mainnet=True)
    address = eng.wallets.add("main", "ethereum", private_key=KNOWN_KEY, plugin="evm-tester")["address"]
    fund(w3, address, wei("1"))
    dest = Account.create().address
    with pytest.raises(RiskRejected, match="need an allow-list"):
        eng.wallets.send("main", dest, "0.1")
    eng.wallets.set_limits("main", allow=[dest])
    with pytest.raises(RiskRejected, match="need a daily limit"):
        eng.wallets.send("main", dest, "0.1")
    eng.wallets.set_limits("main", daily={"ETH": "1"})
    with pytest.raises(ConfigError, match="network ethereum is chain id 1: nothing was signed"):
        eng.wallets.send("main", dest, "0.1")
    assert transfer_rows(eng) == [] and w3.eth.get_transaction_count(address, "pending") == 0
    wallet = eng.wallet_for("main")
    wallet.unlock()
    for text in (repr(wallet), str(vars(wallet)), repr(eng.wallets), repr(eng)):
        assert KNOWN_KEY[2:] not in text.lower()

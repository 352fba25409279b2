"""Tests for the EVM test infrastructure: the ERC-20 fixture and tests/chain_server.py.

(a) the compiled Token fixture on an in-process ``Web3(EthereumTesterProvider())``;
(b) chain_server.py as a subprocess: a raw EIP-1559 tx sent by a client process that is
    then SIGKILLed is found by hash after reconnecting;
(c) manual mining: a sent tx has no receipt until mined (plus mempool semantics).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3RPCError

TESTS_DIR = Path(__file__).resolve().parent
FIXTURE_DIR = TESTS_DIR / "fixtures" / "erc20"


def _load_chain_server():
    # Load by path: works whether or not tests/ is a package / on sys.path.
    spec = importlib.util.spec_from_file_location("tg_chain_server", TESTS_DIR / "chain_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


chain_server = _load_chain_server()

TOKEN_ABI = json.loads((FIXTURE_DIR / "Token.abi.json").read_text())
TOKEN_BIN = (FIXTURE_DIR / "Token.bin").read_text().strip()
DECIMALS = 6
SUPPLY = 1_000_000 * 10**DECIMALS


def _deploy_token(w3: Web3, deployer: str):
    factory = w3.eth.contract(abi=TOKEN_ABI, bytecode=TOKEN_BIN)
    tx_hash = factory.constructor("Test USD", "TUSD", DECIMALS, SUPPLY).transact({"from": deployer})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=TOKEN_ABI)


def _opcodes(code: bytes):
    """Linear-sweep disassembly yielding opcodes (skips PUSH immediates)."""
    i = 0
    while i < len(code):
        op = code[i]
        yield op
        i += 1 + (op - 0x5F if 0x60 <= op <= 0x7F else 0)


# --------------------------------------------------------------------------- #
# (a) the fixture on an in-process chain
# --------------------------------------------------------------------------- #


def test_fixture_artifacts_match_source():
    meta = json.loads((FIXTURE_DIR / "Token.build.json").read_text())
    source_hash = hashlib.sha256((FIXTURE_DIR / "Token.sol").read_bytes()).hexdigest()
    assert meta["sourceSha256"] == source_hash, "Token.sol changed: run tests/fixtures/erc20/build.sh"
    assert meta["evmVersion"] == "paris"
    bytes.fromhex(TOKEN_BIN)  # plain hex, no 0x
    names = {(e["type"], e.get("name")) for e in TOKEN_ABI}
    for fn in ("name", "symbol", "decimals", "totalSupply", "balanceOf", "allowance",
               "transfer", "approve", "transferFrom"):
        assert ("function", fn) in names
    assert ("event", "Transfer") in names and ("event", "Approval") in names


@pytest.fixture
def tester_w3():
    return Web3(EthereumTesterProvider())


def test_token_on_eth_tester(tester_w3):
    w3 = tester_w3
    owner, alice, bob = w3.eth.accounts[:3]
    token = _deploy_token(w3, owner)

    assert token.functions.name().call() == "Test USD"
    assert token.functions.symbol().call() == "TUSD"
    assert token.functions.decimals().call() == DECIMALS
    assert token.functions.totalSupply().call() == SUPPLY
    assert token.functions.balanceOf(owner).call() == SUPPLY

    # deployed runtime has no post-Paris opcodes (PUSH0, MCOPY, TLOAD, TSTORE)
    runtime = bytes(w3.eth.get_code(token.address))
    runtime = runtime[: -(int.from_bytes(runtime[-2:], "big") + 2)]  # strip CBOR metadata
    assert not {0x5C, 0x5D, 0x5E, 0x5F} & set(_opcodes(runtime))

    receipt = w3.eth.wait_for_transaction_receipt(
        token.functions.transfer(alice, 250 * 10**DECIMALS).transact({"from": owner})
    )
    (event,) = token.events.Transfer().process_receipt(receipt)
    assert (event.args["from"], event.args["to"], event.args["value"]) == (owner, alice, 250 * 10**DECIMALS)
    assert token.functions.balanceOf(alice).call() == 250 * 10**DECIMALS
    assert token.functions.balanceOf(owner).call() == SUPPLY - 250 * 10**DECIMALS

    # exceeding the balance reverts with the message (call, estimate and transact).
    # NB: in-process EthereumTesterProvider raises eth-tester's TransactionFailed, not
    # web3's ContractLogicError (over chain_server.py HTTP it is ContractLogicError).
    too_much = token.functions.transfer(bob, 250 * 10**DECIMALS + 1)
    with pytest.raises(TransactionFailed, match="transfer amount exceeds balance"):
        too_much.call({"from": alice})
    with pytest.raises(TransactionFailed, match="transfer amount exceeds balance"):
        too_much.estimate_gas({"from": alice})
    with pytest.raises(TransactionFailed, match="transfer amount exceeds balance"):
        too_much.transact({"from": alice})
    # with an explicit gas limit the tx is mined and fails (status 0)
    failed = w3.eth.wait_for_transaction_receipt(too_much.transact({"from": alice, "gas": 100_000}))
    assert failed.status == 0
    assert token.functions.balanceOf(alice).call() == 250 * 10**DECIMALS

    # approve / allowance / transferFrom
    token.functions.approve(bob, 100).transact({"from": alice})
    assert token.functions.allowance(alice, bob).call() == 100
    token.functions.transferFrom(alice, bob, 60).transact({"from": bob})
    assert token.functions.allowance(alice, bob).call() == 40
    assert token.functions.balanceOf(bob).call() == 60
    with pytest.raises(TransactionFailed, match="insufficient allowance"):
        token.functions.transferFrom(alice, bob, 41).call({"from": bob})


# --------------------------------------------------------------------------- #
# chain server helpers
# --------------------------------------------------------------------------- #


def _connect(url: str) -> Web3:
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 10}))
    assert w3.is_connected()
    return w3


def _rpc(w3: Web3, method: str, *params):
    response = w3.provider.make_request(method, list(params))
    if "error" in response:
        raise AssertionError(f"{method} failed: {response['error']}")
    return response["result"]


def _rpc_error(w3: Web3, method: str, *params) -> dict:
    response = w3.provider.make_request(method, list(params))
    assert "error" in response, response
    return response["error"]


def _eip1559(w3: Web3, acct, nonce: int, to: str, value: int, tip: int = 10**9, **extra) -> dict:
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    tx = {"type": 2, "chainId": w3.eth.chain_id, "nonce": nonce, "to": to, "value": value,
          "gas": 21_000, "maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip}
    tx.update(extra)
    return acct.sign_transaction(tx)


@pytest.fixture(scope="module")
def server():
    proc = chain_server.ChainServerProcess(automine=True)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def manual_server():
    proc = chain_server.ChainServerProcess(automine=False)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


# A separate *client* process: signs + sends one EIP-1559 raw tx, prints the hash, then
# hangs until it is SIGKILLed (a wallet/bot crashing right after broadcasting).
CLIENT_CODE = r"""
import os, time
from eth_account import Account
from web3 import HTTPProvider, Web3
w3 = Web3(HTTPProvider(os.environ["TG_URL"], request_kwargs={"timeout": 10}))
acct = Account.from_key(os.environ["TG_KEY"])
base = w3.eth.get_block("latest")["baseFeePerGas"]
tip = w3.eth.max_priority_fee
tx = {"type": 2, "chainId": w3.eth.chain_id, "to": os.environ["TG_TO"],
      "value": int(os.environ["TG_VALUE"]),
      "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
      "maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip}
tx["gas"] = w3.eth.estimate_gas({k: v for k, v in tx.items() if k in ("to", "value")} | {"from": acct.address})
tx_hash = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
print(tx_hash.to_0x_hex(), flush=True)
time.sleep(120)
"""


def _send_from_killed_client(url: str, key: str, to: str, value: int) -> str:
    env = dict(os.environ, TG_URL=url, TG_KEY=key, TG_TO=to, TG_VALUE=str(value))
    client = subprocess.Popen([sys.executable, "-c", CLIENT_CODE], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([client.stdout], [], [], 20)
        line = client.stdout.readline().strip() if ready else ""
        assert line.startswith("0x") and len(line) == 66, (
            f"client did not report a tx hash: {line!r}; stderr: "
            f"{client.stderr.read() if client.poll() is not None else '(running)'}"
        )
        assert client.poll() is None  # still alive: now crash it
        client.send_signal(signal.SIGKILL)
        assert client.wait(10) == -signal.SIGKILL
        return line
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
        client.stdout.close()
        client.stderr.close()


# --------------------------------------------------------------------------- #
# (b) automining server, client killed after sending
# --------------------------------------------------------------------------- #


def test_server_basic_rpc(server):
    w3 = _connect(server.url)
    assert server.url.startswith("http://127.0.0.1:")
    assert w3.eth.chain_id == 131277322940537
    accounts = w3.eth.accounts
    assert len(accounts) == 10
    assert w3.eth.get_balance(accounts[0]) > 10**23  # 1,000,000 ETH each at genesis
    assert w3.eth.max_priority_fee == 10**9
    latest = w3.eth.get_block("latest")
    assert latest["baseFeePerGas"] > 0
    assert w3.eth.gas_price == w3.eth.get_block("pending")["baseFeePerGas"] + 10**9
    assert w3.net.version == str(w3.eth.chain_id)
    info = _rpc(w3, "tg_info")
    assert info["automine"] is True and info["faucet"] not in accounts

    fresh = Account.create()
    fund_hash = _rpc(w3, "tg_fund", fresh.address, hex(3 * 10**18))
    assert w3.eth.get_balance(fresh.address) == 3 * 10**18
    assert w3.eth.get_transaction_receipt(fund_hash)["status"] == 1

    history = w3.eth.fee_history(2, "latest", [25, 75])
    head = w3.eth.block_number
    assert history["oldestBlock"] == head - 1
    assert len(history["baseFeePerGas"]) == 3 and len(history["gasUsedRatio"]) == 2
    assert len(history["reward"]) == 2 and all(len(r) == 2 for r in history["reward"])

    bad = _rpc_error(w3, "eth_noSuchMethod")
    assert bad["code"] == -32601


def test_raw_eip1559_tx_found_after_client_killed(server):
    w3 = _connect(server.url)
    sender = Account.create()
    recipient = Account.create().address
    # fund the locally generated key from an unlocked eth-tester account
    fund = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": sender.address, "value": 10**18})
    assert w3.eth.wait_for_transaction_receipt(fund, timeout=10)["status"] == 1

    tx_hash = _send_from_killed_client(server.url, sender.key.to_0x_hex(), recipient, 12345)

    del w3  # the original client connection is gone too; reconnect from scratch
    w3 = _connect(server.url)
    tx = w3.eth.get_transaction(tx_hash)
    assert tx["hash"].to_0x_hex() == tx_hash
    assert tx["type"] == 2 and tx["from"] == sender.address and tx["to"] == recipient
    assert tx["nonce"] == 0 and tx["value"] == 12345
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    assert receipt["status"] == 1 and receipt["blockNumber"] == tx["blockNumber"]
    assert receipt["effectiveGasPrice"] <= tx["maxFeePerGas"]
    assert w3.eth.get_balance(recipient) == 12345
    assert w3.eth.get_transaction_count(sender.address, "pending") == 1

    # a restarted wallet that reuses the mined nonce is rejected, geth style
    stale = _eip1559(w3, sender, 0, recipient, 1)
    err = _rpc_error(w3, "eth_sendRawTransaction", stale.raw_transaction.to_0x_hex())
    assert "nonce too low" in err["message"]


def test_erc20_over_http(server):
    w3 = _connect(server.url)
    wallet = Account.create()
    _rpc(w3, "tg_fund", wallet.address, hex(10**18))
    chain_id = w3.eth.chain_id

    def send(tx: dict) -> dict:
        tx = dict(tx, chainId=chain_id, nonce=w3.eth.get_transaction_count(wallet.address, "pending"))
        tx_hash = w3.eth.send_raw_transaction(wallet.sign_transaction(tx).raw_transaction)
        return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)

    factory = w3.eth.contract(abi=TOKEN_ABI, bytecode=TOKEN_BIN)
    receipt = send(factory.constructor("Test USD", "TUSD", DECIMALS, SUPPLY).build_transaction(
        {"from": wallet.address, "nonce": 0}))
    token = w3.eth.contract(address=receipt["contractAddress"], abi=TOKEN_ABI)
    assert token.functions.decimals().call() == DECIMALS
    assert token.functions.symbol().call() == "TUSD"
    assert token.functions.balanceOf(wallet.address).call() == SUPPLY

    dest = Account.create().address
    receipt = send(token.functions.transfer(dest, 5 * 10**DECIMALS).build_transaction(
        {"from": wallet.address, "nonce": 1}))
    assert receipt["status"] == 1
    (event,) = token.events.Transfer().process_receipt(receipt)
    assert event.args["to"] == dest and event.args["value"] == 5 * 10**DECIMALS
    assert token.functions.balanceOf(dest).call() == 5 * 10**DECIMALS
    logs = w3.eth.get_logs({"fromBlock": receipt["blockNumber"], "toBlock": "latest",
                            "address": token.address})
    assert [log["transactionHash"] for log in logs] == [receipt["transactionHash"]]

    # an address with tokens but no ETH can still eth_call / estimate (geth semantics)
    assert w3.eth.get_balance(dest) == 0
    assert token.functions.balanceOf(dest).call({"from": dest}) == 5 * 10**DECIMALS
    assert token.functions.transfer(wallet.address, 1).estimate_gas({"from": dest}) > 21_000

    too_much = token.functions.transfer(dest, SUPPLY)
    with pytest.raises(ContractLogicError, match="transfer amount exceeds balance") as exc_info:
        too_much.call({"from": dest})
    assert exc_info.value.data.startswith("0x08c379a0")
    with pytest.raises(ContractLogicError, match="transfer amount exceeds balance"):
        too_much.estimate_gas({"from": dest})

    # with an explicit gas limit a reverting tx is mined with status 0 (gas is burnt)
    before = w3.eth.get_balance(wallet.address)
    receipt = send(token.functions.transfer(dest, SUPPLY + 1).build_transaction(
        {"from": wallet.address, "nonce": 2, "gas": 100_000}))
    assert receipt["status"] == 0
    assert w3.eth.get_balance(wallet.address) == before - receipt["gasUsed"] * receipt["effectiveGasPrice"]


# --------------------------------------------------------------------------- #
# (c) manual mining
# --------------------------------------------------------------------------- #


def test_manual_mining_pending_until_mined(manual_server):
    w3 = _connect(manual_server.url)
    assert _rpc(w3, "tg_getAutomine") is False
    sender = Account.create()
    recipient = Account.create().address
    _rpc(w3, "tg_fund", sender.address, hex(10**18))  # tg_fund mines even in manual mode
    assert w3.eth.get_balance(sender.address) == 10**18
    start_block = w3.eth.block_number

    # a client sends and crashes before the tx is mined
    tx_hash = _send_from_killed_client(manual_server.url, sender.key.to_0x_hex(), recipient, 7)
    w3 = _connect(manual_server.url)
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction_receipt(tx_hash)
    with pytest.raises(TimeExhausted):
        w3.eth.wait_for_transaction_receipt(tx_hash, timeout=0.3, poll_latency=0.05)
    pending = w3.eth.get_transaction(tx_hash)
    assert pending["blockNumber"] is None and pending["blockHash"] is None
    assert pending["from"] == sender.address and pending["nonce"] == 0 and pending["type"] == 2
    assert w3.eth.block_number == start_block
    # nonce bookkeeping a restarted wallet relies on
    assert w3.eth.get_transaction_count(sender.address, "latest") == 0
    assert w3.eth.get_transaction_count(sender.address, "pending") == 1

    # a second tx from the same sender queues behind the first
    second = _eip1559(w3, sender, 1, recipient, 8)
    second_hash = w3.eth.send_raw_transaction(second.raw_transaction).to_0x_hex()
    assert w3.eth.get_transaction_count(sender.address, "pending") == 2
    assert [e["hash"] for e in _rpc(w3, "tg_txpool")] == [tx_hash, second_hash]

    # geth-style mempool errors
    assert "already known" in _rpc_error(w3, "eth_sendRawTransaction", second.raw_transaction.to_0x_hex())["message"]
    same_fee = _eip1559(w3, sender, 1, recipient, 9)
    assert "replacement transaction underpriced" in _rpc_error(
        w3, "eth_sendRawTransaction", same_fee.raw_transaction.to_0x_hex())["message"]
    with pytest.raises(Web3RPCError, match="insufficient funds"):
        w3.eth.send_raw_transaction(_eip1559(w3, sender, 2, recipient, 10**19).raw_transaction)

    # an evicted tx disappears (simulates a node dropping it)
    third = _eip1559(w3, sender, 2, recipient, 9)
    third_hash = w3.eth.send_raw_transaction(third.raw_transaction).to_0x_hex()
    assert _rpc(w3, "tg_dropTransaction", third_hash) is True
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction(third_hash)
    assert w3.eth.get_transaction_count(sender.address, "pending") == 2

    assert _rpc(w3, "evm_mine") == "0x0"
    first_receipt = w3.eth.get_transaction_receipt(tx_hash)
    second_receipt = w3.eth.get_transaction_receipt(second_hash)
    assert first_receipt["status"] == second_receipt["status"] == 1
    assert first_receipt["blockNumber"] == second_receipt["blockNumber"] == start_block + 1
    assert w3.eth.get_transaction(tx_hash)["blockNumber"] == start_block + 1
    assert w3.eth.get_balance(recipient) == 15
    assert w3.eth.get_transaction_count(sender.address, "latest") == 2
    assert _rpc(w3, "tg_txpool") == []

    # switching automine on mines what is pending
    late = w3.eth.send_raw_transaction(_eip1559(w3, sender, 2, recipient, 1).raw_transaction)
    assert w3.eth.get_transaction_count(sender.address, "pending") == 3
    assert _rpc(w3, "tg_setAutomine", True) is True
    assert w3.eth.get_transaction_receipt(late)["status"] == 1

    # SIGTERM stops the server cleanly
    assert manual_server.stop() == 0

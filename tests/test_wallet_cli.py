"""``tradeguard wallet`` through the CLI (CliRunner) against a chain served over
loopback JSON-RPC: keys from stdin/env (never argv), balances, sends and their
refusals with the right exit codes, keystores, signing — and the private key
never in the database, the logs or the output."""

from __future__ import annotations

import json
import os
import stat

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from web3 import HTTPProvider, Web3

from conftest import Cli
from wallet_helpers import (
    KNOWN_ADDRESS,
    KNOWN_KEY,
    MASTER_KEY,
    TESTER_CHAIN_ID,
    assert_no_key_in_files,
    assert_no_key_in_text,
    load_chain_server,
    rpc,
    wei,
)

chain_server = load_chain_server()
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def chain():
    with chain_server.ChainServer(automine=True) as server:
        server.w3 = Web3(HTTPProvider(server.url, request_kwargs={"timeout": 10}))
        yield server


class WalletCli(Cli):
    """The CLI with the master key in the environment (never argv)."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "TRADEGUARD_MASTER_KEY": MASTER_KEY}

    def ok(self, *args: str, **kwargs):
        result = self(*args, **kwargs)
        assert result.exit_code == 0, (result.exit_code, result.output)
        return result

    def db_files(self):
        return list(self.home.glob("tradeguard.db*"))


@pytest.fixture
def cli(home) -> WalletCli:
    runner = WalletCli(home, None)
    runner.ok("account", "add", "alice", "--exchange", "paper")
    return runner


def add_known(cli: WalletCli, chain, account: str = "alice") -> dict:
    return cli.json("wallet", "add", account, "--network", "custom", "--chain-id", str(TESTER_CHAIN_ID),
                    "--rpc-url", chain.url, "--stdin", input=KNOWN_KEY + "\n")


def transfers(cli: WalletCli, account: str = "alice") -> list:
    return cli.json("wallet", "transfers", account)


def test_add_fund_balance_send_and_no_key_anywhere(cli, chain):
    outputs = []
    info = add_known(cli, chain)
    assert info["address"] == KNOWN_ADDRESS and info["generated"] is False
    rpc(chain.w3, "tg_fund", KNOWN_ADDRESS, hex(wei("2")))
    balance = cli.json("wallet", "balance", "alice")
    assert balance["balance"] == "2" and balance["asset"] == "ETH"
    dest = Account.create().address
    result = cli("--debug", "wallet", "send", "alice", dest, "0.75", "--yes", "--json")
    assert result.exit_code == 0, result.output
    sent = json.loads(result.stdout)
    outputs += [result.stdout, result.stderr]
    assert sent["status"] == "confirmed" and sent["amount"] == "0.75" and sent["gas_used"] == 21000
    assert chain.w3.eth.get_balance(dest) == wei("0.75")
    text = cli.ok("wallet", "send", "alice", dest, "0.25", "--yes")
    assert text.stdout.startswith("confirmed: 0.25 ETH to " + dest)
    outputs += [text.output]
    shown = cli.json("wallet", "show", "alice")
    assert shown["address"] == KNOWN_ADDRESS and shown["rpc"] == chain.url and shown["open_transfers"] == 0
    assert [t["amount"] for t in transfers(cli)] == ["0.25", "0.75"]
    table = cli.ok("wallet", "balance", "alice")
    assert "ETH" in table.stdout
    outputs += [table.output, json.dumps(shown), cli.ok("--debug", "audit", "tail").output if _has("audit") else ""]
    assert_no_key_in_text(KNOWN_KEY, *outputs)
    assert_no_key_in_files(KNOWN_KEY, cli.db_files())
    assert_no_key_in_files(KNOWN_KEY, cli.home.rglob("*"))


def _has(command: str) -> bool:
    from tradeguard.cli import cli as root

    return command in root.commands


def test_key_sources_never_argv(cli, chain, monkeypatch):
    result = cli("wallet", "add", "alice", "--network", "sepolia", "--private-key", KNOWN_KEY)
    assert result.exit_code == 2 and "No such option" in result.output
    assert_no_key_in_text(KNOWN_KEY, result.output)
    # no terminal to prompt on: a clear error, nothing stored
    result = cli("wallet", "add", "alice", "--network", "custom", "--chain-id", str(TESTER_CHAIN_ID))
    assert result.exit_code == 2 and "--stdin" in result.output
    result = cli("wallet", "add", "alice", "--network", "custom", "--chain-id", "1", "--from-env", "NOPE")
    assert result.exit_code == 2 and "NOPE is not set" in result.output
    cli.ok("account", "add", "bob", "--exchange", "paper")
    info = cli.json("wallet", "add", "bob", "--network", "custom", "--chain-id", str(TESTER_CHAIN_ID), "--rpc-url",
                    chain.url, "--from-env", "BOB_KEY", env={"BOB_KEY": KNOWN_KEY[2:]})
    assert info["address"] == KNOWN_ADDRESS
    generated = cli.ok("wallet", "add", "alice", "--network", "custom", "--chain-id", str(TESTER_CHAIN_ID),
                       "--rpc-url", chain.url, "--generate")
    assert "back the key up now: tradeguard wallet export-keystore alice" in generated.stdout
    address = cli.json("account", "show", "alice")["wallet_address"]
    assert address in generated.stdout and "wallet_private_key" in cli.json("account", "show", "alice")["credentials"]


def test_bad_input_exits_2_and_changes_nothing(cli, chain):
    before = cli.json("account", "show", "alice")
    cases = [
        (["--network", "atlantis", "--generate"], "unknown network"),
        (["--network", "ethereum", "--generate"], "testnet-only"),
        (["--network", "custom", "--generate"], "chain id"),
        (["--network", "custom", "--chain-id", "5", "--stdin"], "64 hex digits"),
        (["--network", "custom", "--chain-id", "5", "--rpc-url", "ftp://x", "--generate"], "http"),
    ]
    for args, message in cases:
        result = cli("wallet", "add", "alice", *args, input="0xnot-a-key\n")
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "not-a-key" not in result.output
    assert cli.json("account", "show", "alice") == before
    assert cli("wallet", "balance", "alice").exit_code == 2  # no wallet yet
    assert cli("wallet", "send", "nobody", KNOWN_ADDRESS, "1", "--yes").exit_code == 2


def test_send_refusals_and_exit_codes(cli, chain):
    add_known(cli, chain)
    rpc(chain.w3, "tg_fund", KNOWN_ADDRESS, hex(wei("1")))
    sent_before = chain.w3.eth.get_transaction_count(KNOWN_ADDRESS)  # the chain is shared by this module
    dest = Account.create().address
    # not confirmed without a terminal
    result = cli("wallet", "send", "alice", dest, "0.1")
    assert result.exit_code == 2 and "--yes" in result.stderr
    # bad destination, bad amount: exit 2
    wrong_case = dest[:2] + dest[2:].swapcase()
    for to, amount in [(wrong_case, "0.1"), (dest, "-3"), (dest, "ten")]:
        result = cli("wallet", "send", "alice", to, amount, "--yes")
        assert result.exit_code == 2, result.output
    # insufficient funds: exit 1, nothing on chain
    result = cli("wallet", "send", "alice", dest, "5", "--yes")
    assert result.exit_code == 1 and "insufficient funds" in result.stderr
    # transfer limits: exit 3, JSON says rejected
    cli.ok("wallet", "limits", "alice", "--daily", "ETH=0.1", "--allow", dest)
    result = cli("wallet", "send", "alice", dest, "0.2", "--yes", "--json")
    assert result.exit_code == 3 and json.loads(result.stdout)["status"] == "rejected"
    result = cli("wallet", "send", "alice", KNOWN_ADDRESS.lower()[:-1] + "0", "0.01", "--yes")
    assert result.exit_code == 3 and "allow-list" in result.stderr
    limits = cli.json("wallet", "limits", "alice")
    assert limits["daily_limits"] == {"ETH": "0.1"} and limits["allowed_destinations"] == [dest]
    assert transfers(cli) == [] and chain.w3.eth.get_transaction_count(KNOWN_ADDRESS) == sent_before
    # HALTED: exit 3 via EmergencyStopActive
    from wallet_helpers import open_engine

    with open_engine(f"sqlite:///{cli.home / 'tradeguard.db'}", cli.home) as engine:
        engine.trading.emergency_stop("alice", reason="test")
    result = cli("wallet", "send", "alice", dest, "0.05", "--yes", "--json")
    assert result.exit_code == 3 and json.loads(result.stdout)["status"] == "halted"
    assert "HALTED" in result.stderr
    assert transfers(cli) == []


def test_wrong_chain_id_exits_2_before_signing(cli, chain):
    cli.ok("wallet", "add", "alice", "--network", "custom", "--chain-id", "31337", "--rpc-url", chain.url, "--generate")
    address = cli.json("account", "show", "alice")["wallet_address"]
    rpc(chain.w3, "tg_fund", address, hex(wei("1")))
    result = cli("wallet", "send", "alice", KNOWN_ADDRESS, "0.1", "--yes")
    assert result.exit_code == 2 and "nothing was signed" in result.stderr
    assert transfers(cli) == [] and chain.w3.eth.get_transaction_count(address, "pending") == 0


def test_keystore_export_import_and_signing(cli, chain, tmp_path, home):
    add_known(cli, chain)
    path = tmp_path / "alice.json"
    env = {"KS_PASSWORD": "a long enough password"}
    result = cli("wallet", "export-keystore", "alice", str(path), "--password-env", "KS_PASSWORD", "--light-kdf",
                 env=env)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    keystore = json.loads(path.read_text())  # decrypting it is the import below
    assert keystore["version"] == 3 and keystore["crypto"]["kdfparams"]["n"] == 4096
    assert cli("wallet", "export-keystore", "alice", str(path), "--password-env", "KS_PASSWORD", env=env).exit_code == 2
    assert_no_key_in_text(KNOWN_KEY, result.output)

    other = WalletCli(home / "other", None)
    other.home.mkdir()
    other.ok("account", "add", "carol", "--exchange", "paper")
    bad = other("wallet", "import-keystore", "carol", str(path), "--network", "custom", "--chain-id",
                str(TESTER_CHAIN_ID), "--password-stdin", input="wrong password\n")
    assert bad.exit_code == 2 and "wrong password" in bad.stderr
    imported = other.json("wallet", "import-keystore", "carol", str(path), "--network", "custom", "--chain-id",
                          str(TESTER_CHAIN_ID), "--rpc-url", chain.url, "--password-stdin",
                          input=env["KS_PASSWORD"] + "\n")
    assert imported["address"] == KNOWN_ADDRESS

    # signing is off until enabled
    refused = other("wallet", "sign", "carol", "--message", "login 42")
    assert refused.exit_code == 2 and "--allow-signing" in refused.stderr
    other.ok("wallet", "set", "carol", "--allow-signing")
    signed = other.json("wallet", "sign", "carol", "--message", "login 42")
    assert Account.recover_message(encode_defunct(text="login 42"), signature=signed["signature"]) == KNOWN_ADDRESS
    typed = {
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
                  "Delegate": [{"name": "to", "type": "address"}]},
        "primaryType": "Delegate", "domain": {"name": "Venue", "chainId": TESTER_CHAIN_ID},
        "message": {"to": KNOWN_ADDRESS},
    }
    typed_path = tmp_path / "typed.json"
    typed_path.write_text(json.dumps(typed))
    signature = other.json("wallet", "sign", "carol", "--typed-data", str(typed_path))["signature"]
    assert Account.recover_message(encode_typed_data(full_message=typed), signature=signature) == KNOWN_ADDRESS
    assert other("wallet", "sign", "carol").exit_code == 2
    assert_no_key_in_files(KNOWN_KEY, list(other.home.rglob("*")) + cli.db_files())

"""One test per hook (``test_hook_<name>``), plus meta-tests that keep the hook
list, these tests and docs/plugins.md in step (as datasette does)."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
from pathlib import Path
from typing import Any, Iterator

import click
import pytest
from click.testing import CliRunner

from tradeguard import Decision, Engine, OrderRequest, SettingSpec, Verdict, hookimpl, hookspecs
from tradeguard.adapters import AdapterConfig
from tradeguard.plugin_manager import PluginManager, get_hookspec_names
from tradeguard.protocols import BackupTarget, ExchangeAdapter, WalletAdapter

from plugin_helpers import registered

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def hook_signature(name: str) -> str:
    """``name(arg, arg)`` as the docs must show it."""
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


# -- meta-tests ------------------------------------------------------------------------------


def test_every_hook_has_a_test() -> None:
    tests = {name for name in globals() if name.startswith("test_hook_")}
    missing = [name for name in get_hookspec_names() if f"test_hook_{name}" not in tests]
    assert missing == [], f"hooks without a test_hook_<name> in tests/test_hooks.py: {missing}"
    stale = sorted(t for t in tests if t[len("test_hook_"):] not in get_hookspec_names())
    assert stale == [], f"tests for hooks that do not exist: {stale}"


def test_every_hook_is_documented_with_its_signature() -> None:
    docs = DOCS.read_text()
    missing = [hook_signature(name) for name in get_hookspec_names() if hook_signature(name) not in docs]
    assert missing == [], f"docs/plugins.md lacks these hook signatures: {missing}"


def test_every_hook_has_a_full_docstring() -> None:
    for name in get_hookspec_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        params = inspect.signature(getattr(hookspecs, name)).parameters
        for param in params:
            assert f":param {param}:" in doc, f"{name}: docstring does not describe {param}"
        assert ":returns:" in doc and "Example::" in doc, f"{name}: docstring needs :returns: and an example"


def test_documented_hooks_are_the_real_hooks() -> None:
    """No hook is documented that does not exist (a renamed hook leaves no stale docs)."""
    documented = set(re.findall(r"^### `((?:register|on)_\w+)\(", DOCS.read_text(), re.MULTILINE))
    assert documented == set(get_hookspec_names())


def test_markers_are_exported_from_tradeguard() -> None:
    import tradeguard

    assert tradeguard.hookimpl is hookspecs.hookimpl
    assert tradeguard.hookspec is hookspecs.hookspec


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def eng(tmp_path: Path, home: Path) -> Iterator[Engine]:
    with Engine.open(f"sqlite:///{tmp_path / 'hooks.db'}", home=home, load_entrypoints=False) as engine:
        yield engine


def event_plugins(hook_name: str, calls: list[dict[str, Any]]) -> tuple[Any, Any]:
    """A plugin recording *hook_name* calls, and one whose implementation raises."""

    def record(**kwargs: Any) -> None:
        calls.append(kwargs)

    def explode(**kwargs: Any) -> None:
        raise RuntimeError("plugin bug")

    argnames = list(inspect.signature(getattr(hookspecs, hook_name)).parameters)

    def make(body: Any) -> Any:
        namespace: dict[str, Any] = {}
        exec(f"def {hook_name}({', '.join(argnames)}):\n    body({', '.join(f'{a}={a}' for a in argnames)})",
             {"body": body}, namespace)
        return type(f"{hook_name}_plugin", (), {hook_name: staticmethod(hookimpl(namespace[hook_name]))})()

    return make(record), make(explode)


@contextlib.contextmanager
def event_recorded(engine: Engine, hook_name: str, caplog: pytest.LogCaptureFixture) -> Iterator[list[dict[str, Any]]]:
    """Record *hook_name* calls made inside the block, next to a plugin whose
    implementation raises; afterwards assert the failure was logged, not raised."""
    calls: list[dict[str, Any]] = []
    recorder, raiser = event_plugins(hook_name, calls)
    with registered(engine, recorder, "recorder"), registered(engine, raiser, "raiser"):
        with caplog.at_level(logging.ERROR, logger="tradeguard.plugins"):
            yield calls
    assert any(hook_name in r.getMessage() and "raiser" in r.getMessage() for r in caplog.records), \
        f"the raising {hook_name} implementation was not called (or not logged)"


# -- registration hooks ---------------------------------------------------------------------


class FakeVenue:
    name = "fakex"
    testnet = True
    capabilities = frozenset()
    closed = False

    def __init__(self, config: AdapterConfig):
        self.config = config

    def load_markets(self, reload=False): return {}
    def fetch_ticker(self, symbol): raise NotImplementedError
    def fetch_balance(self): return []
    def fetch_positions(self): return []
    def create_order(self, request, client_order_id): raise NotImplementedError
    def cancel_order(self, symbol, exchange_order_id, client_order_id): raise NotImplementedError
    def fetch_order(self, symbol, exchange_order_id): raise NotImplementedError
    def fetch_order_by_client_id(self, symbol, client_order_id): return None
    def fetch_open_orders(self, symbol=None): return []
    def fetch_my_trades(self, symbol=None, since=None): return []

    def close(self) -> None:
        self.closed = True


def test_hook_register_exchanges(eng: Engine) -> None:
    class Plugin:
        @hookimpl
        def register_exchanges(self, register):
            register("fakex", FakeVenue, settings=[SettingSpec("region", str, default="eu"),
                                                   SettingSpec("api_key", secret=True, required=True)])

    with registered(eng, Plugin(), "fake-exchange"):
        registration = eng.plugins.exchanges.get("fakex")
        assert registration.plugin == "fake-exchange"
        assert [s.name for s in registration.settings] == ["region", "api_key"]
        eng.accounts.add("main", "fakex")
        adapter = eng.exchange_for("main")
        assert isinstance(adapter, FakeVenue) and isinstance(adapter, ExchangeAdapter)
        assert adapter.config.account == "main" and adapter.config.venue == "fakex"
        assert adapter.config.testnet is True
        assert dict(adapter.config.settings) == {"region": "eu"}
        assert eng.exchange_for("main") is adapter  # cached per account
    assert "fakex" not in eng.plugins.exchanges  # removed with its plugin


def test_hook_register_wallets(eng: Engine) -> None:
    from tradeguard.storage import use_database
    from tradeguard.storage.models import Account

    class Wallet:
        network = "testchain"
        chain_id = 31337
        testnet = True

        def __init__(self, config):
            self.config = config
            self.address = config.address

        def get_balance(self, asset=None): return 0
        def transfer(self, request): raise NotImplementedError
        def sign_message(self, message): return "0x"
        def close(self): pass

    class Plugin:
        @hookimpl
        def register_wallets(self, register):
            register("fakewallet", Wallet, settings=[SettingSpec("rpc_url", str, default="http://127.0.0.1:8545")])

    with registered(eng, Plugin(), "fake-wallet"):
        assert eng.plugins.wallets.get("fakewallet").plugin == "fake-wallet"
        eng.accounts.add("w", "paper", settings={"wallet": "fakewallet"})
        with use_database(eng.db):
            Account.update(wallet_address="0xabc", wallet_network="testchain").where(Account.name == "w").execute()
        wallet = eng.wallet_for("w")
        assert isinstance(wallet, WalletAdapter)
        assert wallet.config.kind == "wallet" and wallet.address == "0xabc" and wallet.config.network == "testchain"
        assert wallet.config.settings["rpc_url"] == "http://127.0.0.1:8545"


def test_hook_register_risk_rules(eng: Engine) -> None:
    class MaxQuantity:
        name = "max_quantity"
        description = "block orders larger than a quantity"
        settings = (SettingSpec("max", str, default="1"),)
        enabled_by_default = False

        def check(self, request, context, settings):
            if request.quantity > __import__("decimal").Decimal(settings["max"]):
                return Decision.block("too big", quantity=request.quantity)
            return Decision.allow()

    class Plugin:
        @hookimpl
        def register_risk_rules(self, register):
            register("max_quantity", MaxQuantity())

    with registered(eng, Plugin(), "rules"):
        registration = eng.plugins.risk_rules.get("max_quantity")
        assert registration.plugin == "rules"
        assert [s.name for s in registration.settings] == ["max"]  # taken from rule.settings
        rule = registration.factory
        big = OrderRequest(account="a", symbol="BTC/USDT", side="buy", quantity="2")
        assert rule.check(big, None, {"max": "1"}).verdict is Verdict.BLOCK
        assert rule.check(big, None, {"max": "5"}).verdict is Verdict.ALLOW


def test_hook_register_backup_targets(eng: Engine) -> None:
    class MemoryTarget:
        store: dict[str, bytes] = {}

        def __init__(self, url):
            self.url = url

        def put(self, name, stream):
            data = b"".join(iter(lambda: stream.read(4), b""))
            self.store[name] = data
            return len(data)

        def get(self, name): return io.BytesIO(self.store[name])
        def list(self): return sorted(self.store)
        def delete(self, name): del self.store[name]

    class Plugin:
        @hookimpl
        def register_backup_targets(self, register):
            register("mem", MemoryTarget)

    with registered(eng, Plugin(), "mem-backups"):
        target = eng.plugins.backup_targets.get("mem").factory("mem://bucket")
        assert isinstance(target, BackupTarget)
        assert target.put("b1", io.BytesIO(b"0123456789")) == 10
        assert target.get("b1").read() == b"0123456789" and list(target.list()) == ["b1"]


def test_hook_register_commands() -> None:
    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            @cli.command()
            @click.argument("who")
            def greet(who):
                """Say hello."""
                click.echo(f"hello {who}")

    class Broken:
        @hookimpl
        def register_commands(self, cli):
            raise RuntimeError("no commands today")

    manager = PluginManager(load_entrypoints=False, extra=[Plugin(), Broken()])

    @click.group()
    def root() -> None:
        pass

    manager.add_commands(root)
    result = CliRunner().invoke(root, ["greet", "bot"])
    assert result.exit_code == 0 and result.output == "hello bot\n"
    assert [(e.plugin, e.error) for e in manager.load_errors] == [
        ("Broken", "register_commands failed: RuntimeError: no commands today")
    ]


# -- event hooks ----------------------------------------------------------------------------


def test_hook_on_account_changed(eng: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Fired by real operations; a raising implementation never breaks them."""
    calls: list[dict[str, Any]] = []
    recorder, raiser = event_plugins("on_account_changed", calls)
    with registered(eng, recorder, "recorder"), registered(eng, raiser, "raiser"):
        with caplog.at_level(logging.ERROR, logger="tradeguard.plugins"):
            eng.accounts.add("main", "paper")
            eng.accounts.set("main", max_open_positions=3)
            assert eng.accounts.remove("main") == "deleted"
    assert [c["action"] for c in calls] == ["add", "set", "remove"]
    assert calls[0]["account"]["name"] == "main" and calls[0]["account"]["exchange"] == "paper"
    assert calls[1]["account"]["limits"]["max_open_positions"] == 3
    assert calls[2]["account"] == {"name": "main", "outcome": "deleted"}
    assert sum("on_account_changed" in r.getMessage() for r in caplog.records) == 3


@pytest.fixture
def trading(tmp_path: Path, home: Path) -> Iterator[Engine]:
    """An Engine with an unlocked vault and a funded paper account."""
    with Engine.open(f"sqlite:///{tmp_path / 'trading.db'}", home=home, load_entrypoints=False,
                     master_key="correct horse battery staple") as engine:
        engine.accounts.add("main", "paper", initial_capital="10000")
        yield engine


def test_hook_on_order_state_changed(trading: Engine, caplog: pytest.LogCaptureFixture) -> None:
    with event_recorded(trading, "on_order_state_changed", caplog) as calls:
        order = trading.place_order("main", "BTC/USDT", "buy", "0.001")
    assert order.status.value == "FILLED"  # the raising plugin did not break the order
    transitions = [(c["old_status"], c["new_status"]) for c in calls]
    assert transitions[0] == (None, "PENDING_SUBMIT") and transitions[-1][1] == "FILLED"
    assert all(c["order"]["id"] == order.id for c in calls)


def test_hook_on_risk_rejection(trading: Engine, caplog: pytest.LogCaptureFixture) -> None:
    from tradeguard import RiskRejected

    with event_recorded(trading, "on_risk_rejection", caplog) as calls:
        with pytest.raises(RiskRejected) as info:
            trading.place_order("main", "BTC/USDT", "buy", "1000")
    (call,) = calls
    assert call["order"]["id"] == info.value.order_id and call["order"]["status"] == "REJECTED"
    assert call["decision"].verdict is Verdict.BLOCK and "max_position_size" in call["decision"].reason


def test_hook_on_emergency_stop(trading: Engine, caplog: pytest.LogCaptureFixture) -> None:
    with event_recorded(trading, "on_emergency_stop", caplog) as calls:
        trading.emergency_stop("main", reason="drill")
    (call,) = calls
    assert call["account"] == "main" and call["event"]["reason"] == "drill"
    assert trading.accounts.get("main").trading_state.value == "HALTED"  # the stop happened regardless


def test_hook_on_resume(trading: Engine, caplog: pytest.LogCaptureFixture) -> None:
    trading.emergency_stop("main", reason="drill")
    with event_recorded(trading, "on_resume", caplog) as calls:
        trading.resume("main", by="alice", notes="venue back")
    assert calls == [{"account": "main", "by": "alice", "notes": "venue back"}]
    assert trading.accounts.get("main").trading_state.value == "ACTIVE"


def test_hook_on_sync_finished(trading: Engine, caplog: pytest.LogCaptureFixture) -> None:
    with event_recorded(trading, "on_sync_finished", caplog) as calls:
        trading.sync("main")
    (call,) = calls
    assert call["account"] == "main" and call["result"]["status"]


def test_hook_on_backup_finished(trading: Engine, caplog: pytest.LogCaptureFixture) -> None:
    with event_recorded(trading, "on_backup_finished", caplog) as calls:
        summary = trading.backups.create()
    (call,) = calls
    assert call["backup"]["id"] == summary["id"] and call["backup"]["size"] == summary["size"]
    assert set(call["backup"]) == {"id", "target", "name", "size", "sha256"}


def test_fire_rejects_a_wrong_call(eng: Engine) -> None:
    """Firing code that names a non-event hook or the wrong arguments is a bug: it raises."""
    with pytest.raises(TypeError, match="not an event hook"):
        eng.plugins.fire("register_exchanges", register=None)
    with pytest.raises(TypeError, match="takes"):
        eng.plugins.fire("on_resume", account="main")
    with pytest.raises(TypeError, match="not an event hook"):
        eng.plugins.fire("on_nothing_at_all")


def test_implementations_may_take_fewer_arguments(eng: Engine) -> None:
    seen: list[str] = []

    class Plugin:
        @hookimpl
        def on_resume(self, by):
            seen.append(by)

    with registered(eng, Plugin(), "partial"):
        assert eng.plugins.fire("on_resume", account=None, by="bob", notes="") == []
    assert seen == ["bob"]

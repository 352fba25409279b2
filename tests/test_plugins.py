"""The plugin manager: load order, lookups, duplicates, broken and misspelt
plugins, the TRADEGUARD_PLUGINS / disable switches, run-time registration,
adapter configs and secrets, and the stable ``tradeguard plugins --json``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from tradeguard import Engine, NotFound, PluginError, SettingSpec, ValidationError, hookimpl
from tradeguard.adapters import AdapterConfig, Secrets, validate_settings
from tradeguard.errors import CredentialsError, DuplicateRegistration, VaultLocked
from tradeguard.plugin_manager import DEFAULT_PLUGINS, PluginManager

from plugin_helpers import (  # noqa: F401  (dists is a fixture)
    BROKEN_IMPORT,
    DUPLICATE_OF_BUILTIN,
    GOOD_PLUGIN,
    MISSPELT_HOOK,
    RAISING_REGISTRATION,
    dists,
    registered,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
BUILTINS = [name.rsplit(".", 1)[-1] for name in DEFAULT_PLUGINS]


class Explicit:
    """An explicitly passed plugin."""

    name = "explicit"

    @hookimpl
    def register_exchanges(self, register):
        register("explicitx", lambda config: None)


# -- load order and lookups -----------------------------------------------------------------


def test_registration_order_builtin_then_entry_points_then_explicit(dists) -> None:
    dists.add("tg-good-plugin", "1.2.3", "good", GOOD_PLUGIN)
    manager = PluginManager(extra=[Explicit()])
    infos = manager.plugins()
    assert [i.name for i in infos] == [*BUILTINS, "good", "explicit"]
    assert [i.origin for i in infos] == ["builtin"] * len(BUILTINS) + ["entrypoint", "embedded"]
    good = infos[len(BUILTINS)]
    assert (good.distribution, good.version, good.source) == ("tg-good-plugin", "1.2.3", "tg-good-plugin 1.2.3")
    assert good.hooks == ("register_exchanges", "register_risk_rules")
    assert manager.registered_by("good") == {"exchanges": ["goodx"], "risk_rules": ["goodrule"]}
    # Registration hooks are collected in load order.
    owners = {r.name: r.plugin for r in manager.exchanges}
    assert (owners["explicitx"], owners["goodx"], owners["paper"]) == ("explicit", "good", "paper")
    assert manager.exchanges.get("goodx").settings[0].secret is True


def test_unknown_name_lookup_lists_known_names() -> None:
    manager = PluginManager(load_entrypoints=False)
    with pytest.raises(NotFound, match=r"unknown exchange 'krakn' \(known: [a-z, ]*\bpaper\b"):
        manager.exchanges.get("krakn")
    assert "paper" in manager.exchanges and "krakn" not in manager.exchanges
    assert manager.exchanges.names() == sorted(manager.exchanges.names())


def test_unknown_exchange_at_the_cli_is_exit_2(sqlite_cli) -> None:
    result = sqlite_cli("account", "add", "main", "--exchange", "krakn")
    if result.exit_code == 2 and "no such option" in result.output.lower():
        result = sqlite_cli("account", "add", "main", "krakn")
    assert result.exit_code == 2
    assert "unknown exchange 'krakn'" in result.output


# -- duplicates -----------------------------------------------------------------------------


def test_duplicate_name_names_both_plugins(dists) -> None:
    dists.add("tg-fancy", "1.0", "fancy", DUPLICATE_OF_BUILTIN)
    with pytest.raises(DuplicateRegistration) as info:
        PluginManager()
    assert str(info.value) == (
        "exchange 'paper' registered twice: by plugin 'paper' (builtin) and by plugin 'fancy' (tg-fancy 1.0)"
    )


def test_duplicate_between_two_explicit_plugins(tmp_path: Path, home: Path) -> None:
    class Again:
        name = "again"

        @hookimpl
        def register_exchanges(self, register):
            register("explicitx", lambda config: None)

    with pytest.raises(DuplicateRegistration, match=r"'explicit' \(embedded\) and by plugin 'again' \(embedded\)"):
        Engine.open(f"sqlite:///{tmp_path / 'x.db'}", home=home, load_entrypoints=False, plugins=[Explicit(), Again()])


def test_duplicate_plugin_name_is_an_error() -> None:
    with pytest.raises(DuplicateRegistration, match="plugin name 'explicit' is used twice"):
        PluginManager(load_entrypoints=False, extra=[Explicit(), Explicit()])


def test_duplicate_at_run_time_leaves_the_engine_as_it_was(sqlite_engine: Engine) -> None:
    class Paper:
        @hookimpl
        def register_exchanges(self, register):
            register("paper", lambda config: None)

    before = [i.name for i in sqlite_engine.plugins.plugins()]
    with pytest.raises(DuplicateRegistration, match="'paper' \\(builtin\\) and by plugin 'imposter' \\(embedded\\)"):
        sqlite_engine.plugins.register(Paper(), name="imposter")
    assert [i.name for i in sqlite_engine.plugins.plugins()] == before
    assert sqlite_engine.plugins.exchanges.get("paper").plugin == "paper"


# -- broken plugins -------------------------------------------------------------------------


def test_plugin_that_fails_to_import_is_reported_and_the_rest_load(dists) -> None:
    dists.add("tg-broken-plugin", "0.1", "broken", BROKEN_IMPORT)
    dists.add("tg-good-plugin", "1.2.3", "good", GOOD_PLUGIN)
    manager = PluginManager()
    assert "goodx" in manager.exchanges
    assert [(e.plugin, e.distribution) for e in manager.load_errors] == [("broken", "tg-broken-plugin")]
    assert manager.load_errors[0].error == "ModuleNotFoundError: No module named 'tg_no_such_module_anywhere'"
    assert "broken" not in [i.name for i in manager.plugins()]


def test_misspelt_hook_is_caught_at_registration(dists) -> None:
    dists.add("tg-misspelt", "0.2", "misspelt", MISSPELT_HOOK)
    manager = PluginManager()
    (error,) = manager.load_errors
    assert (error.plugin, error.distribution) == ("misspelt", "tg-misspelt")
    assert "unknown hook 'register_exchange'" in error.error
    assert "never" not in manager.exchanges and "misspelt" not in [i.name for i in manager.plugins()]


def test_misspelt_hook_in_an_explicit_plugin_raises(sqlite_engine: Engine, tmp_path: Path, home: Path) -> None:
    class Typo:
        @hookimpl
        def on_order_state_change(self, order):  # missing "d"
            pass

    with pytest.raises(PluginError, match="plugin 'typo': .*unknown hook 'on_order_state_change'"):
        sqlite_engine.plugins.register(Typo(), name="typo")
    assert "typo" not in [i.name for i in sqlite_engine.plugins.plugins()]
    with pytest.raises(PluginError, match="unknown hook"):
        Engine.open(f"sqlite:///{tmp_path / 'y.db'}", home=home, load_entrypoints=False, plugins=[Typo()])


def test_registration_hook_that_raises_is_isolated(dists) -> None:
    dists.add("tg-raising", "3.0", "raising", RAISING_REGISTRATION)
    dists.add("tg-good-plugin", "1.2.3", "good", GOOD_PLUGIN)
    manager = PluginManager()
    assert [(e.plugin, e.distribution, e.error) for e in manager.load_errors] == [
        ("raising", "tg-raising", "register_exchanges failed: RuntimeError: cannot reach my licence server")
    ]
    assert "half" not in manager.exchanges  # nothing of the failed plugin is kept
    assert "goodx" in manager.exchanges and "paper" in manager.exchanges


def test_registration_hook_that_raises_in_an_explicit_plugin_raises() -> None:
    class Bad:
        @hookimpl
        def register_risk_rules(self, register):
            register("no_check", object())

    with pytest.raises(PluginError, match=r"plugin 'Bad': risk rule 'no_check' has no check\(request, context, settings\)"):
        PluginManager(load_entrypoints=False, extra=[Bad()])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: r("", lambda c: None), "invalid name ''"),
        (lambda r: r("bad name", lambda c: None), "invalid name 'bad name'"),
        (lambda r: r("ok", "not callable"), "needs a callable factory"),
        (lambda r: r("ok", lambda c: None, settings=["api_key"]), "settings must be SettingSpec"),
        (lambda r: r("ok", lambda c: None, settings=[SettingSpec("a"), SettingSpec("a")]), "declares a setting twice"),
    ],
)
def test_invalid_registrations_are_refused(call: Any, message: str) -> None:
    class Plugin:
        @hookimpl
        def register_exchanges(self, register):
            call(register)

    with pytest.raises(PluginError, match=re.escape(message)):
        PluginManager(load_entrypoints=False, extra=[Plugin()])


# -- switches -------------------------------------------------------------------------------


def test_allow_list_restricts_entry_points(dists, tmp_path: Path, home: Path, monkeypatch) -> None:
    dists.add("tg-good-plugin", "1.2.3", "good", GOOD_PLUGIN)
    dists.add("tg-fancy", "1.0", "fancy", DUPLICATE_OF_BUILTIN)  # would be an error if loaded
    monkeypatch.setenv("TRADEGUARD_PLUGINS", "good, ghost")
    with Engine.open(f"sqlite:///{tmp_path / 'x.db'}", home=home) as engine:
        assert [i.name for i in engine.plugins.plugins()] == [*BUILTINS, "good"]
        assert [(e.plugin, e.error) for e in engine.plugins.load_errors] == [
            ("ghost", "not installed (named in TRADEGUARD_PLUGINS)")
        ]


def test_disable_switch_loads_no_third_party_plugin(dists, tmp_path: Path, home: Path, monkeypatch) -> None:
    dists.add("tg-good-plugin", "1.2.3", "good", GOOD_PLUGIN)
    dists.add("tg-broken-plugin", "0.1", "broken", BROKEN_IMPORT)
    monkeypatch.setenv("TRADEGUARD_DISABLE_PLUGINS", "1")
    with Engine.open(f"sqlite:///{tmp_path / 'x.db'}", home=home) as engine:
        assert [i.name for i in engine.plugins.plugins()] == BUILTINS
        assert engine.plugins.load_errors == []
        assert engine.plugins.third_party_enabled is False
    # Explicit plugins are the embedding code's own choice and still load.
    with Engine.open(f"sqlite:///{tmp_path / 'x.db'}", home=home, plugins=[Explicit()]) as engine:
        assert "explicitx" in engine.plugins.exchanges


# -- run-time registration -------------------------------------------------------------------


def test_register_and_unregister_at_run_time(sqlite_engine: Engine) -> None:
    with registered(sqlite_engine, Explicit(), "temp"):
        assert sqlite_engine.plugins.exchanges.get("explicitx").plugin == "temp"
        assert [i.name for i in sqlite_engine.plugins.plugins()][-1] == "temp"
    assert "explicitx" not in sqlite_engine.plugins.exchanges
    with pytest.raises(NotFound, match="no plugin named 'temp'"):
        sqlite_engine.plugins.unregister("temp")


# -- adapters and secrets --------------------------------------------------------------------


class Venue:
    name = "vault-venue"
    testnet = True
    capabilities = frozenset()
    closed = 0

    def __init__(self, config: AdapterConfig):
        self.config = config

    def close(self) -> None:
        type(self).closed += 1


class VenuePlugin:
    @hookimpl
    def register_exchanges(self, register):
        register("vv", Venue, settings=[SettingSpec("region", str, required=True),
                                        SettingSpec("api_key", secret=True, required=True)])


class FakeVault:
    """The seam the vault provides: secrets_for(account, purpose=..., fields=...) -> Mapping."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fields: list[list[str] | None] = []

    def secrets_for(self, account: str, purpose: str, fields=None) -> dict[str, str]:
        self.calls.append((account, purpose))
        self.fields.append(None if fields is None else list(fields))
        return {"api_key": f"key-of-{account}", "wallet_private_key": "0xdeadbeef"}


@pytest.fixture
def venue_engine(sqlite_engine: Engine) -> Iterator[Engine]:
    Venue.closed = 0
    with registered(sqlite_engine, VenuePlugin(), "vv-plugin"):
        yield sqlite_engine


def test_adapter_gets_only_its_accounts_declared_secrets_lazily(venue_engine: Engine, monkeypatch) -> None:
    vault = FakeVault()
    monkeypatch.setattr(venue_engine, "vault", vault, raising=False)
    venue_engine.accounts.add("a", "vv", settings={"region": "eu"})
    venue_engine.accounts.add("b", "vv", settings={"region": "us"})
    adapter = venue_engine.exchange_for("a")
    assert vault.calls == []  # nothing decrypted until the adapter reads a secret
    assert "key-of-a" not in repr(adapter.config) and repr(adapter.config.secrets) == "<secrets of 'a': not loaded>"
    assert adapter.config.secrets["api_key"] == "key-of-a"
    assert vault.calls == [("a", "adapter")]
    assert vault.fields == [["api_key"]]  # only the declared secret is decrypted
    assert dict(adapter.config.secrets) == {"api_key": "key-of-a"}  # the wallet key is not handed over
    assert repr(adapter.config.secrets) == "<secrets of 'a': 1 fields>"
    assert "key-of-a" not in repr(adapter.config) and "key-of-a" not in str(adapter.config.secrets)
    assert venue_engine.exchange_for("b").config.secrets["api_key"] == "key-of-b"
    assert dict(adapter.config.settings) == {"region": "eu"}


def test_adapters_are_cached_and_closed_with_the_engine(venue_engine: Engine) -> None:
    venue_engine.accounts.add("a", "vv", settings={"region": "eu"})
    first = venue_engine.exchange_for("a")
    assert venue_engine.exchange_for("a") is first
    venue_engine.drop_adapters("a")
    assert Venue.closed == 1
    assert venue_engine.exchange_for("a") is not first
    venue_engine.close()
    assert Venue.closed == 2


def test_secrets_come_from_the_real_vault_only_when_read(tmp_path: Path, home: Path) -> None:
    """With the vault: decrypted (and audited) on first read, only the declared field handed over;
    without the master key a read is a clear VaultLocked error."""
    from tradeguard.storage import use_database
    from tradeguard.storage.models import AuditLog

    url = f"sqlite:///{tmp_path / 'vault.db'}"
    with Engine.open(url, home=home, load_entrypoints=False, master_key="correct horse battery",
                     plugins=[VenuePlugin()]) as engine:
        engine.accounts.add("a", "vv", settings={"region": "eu"})
        engine.vault.set_credentials("a", {"api_key": "K-123", "wallet_private_key": "0x" + "11" * 32})

        def decrypts() -> int:
            with use_database(engine.db):
                return AuditLog.select().where(AuditLog.action == "credential.decrypt").count()

        config = engine.exchange_for("a").config
        assert decrypts() == 0
        assert config.secrets.require("api_key") == "K-123"
        assert decrypts() >= 1
        assert set(config.secrets) == {"api_key"}
        assert "K-123" not in repr(config)
    with Engine.open(url, home=home, load_entrypoints=False, plugins=[VenuePlugin()]) as engine:
        config = engine.exchange_for("a").config  # building the adapter needs no key
        with pytest.raises(VaultLocked, match="master key"):
            config.secrets["api_key"]


def test_secrets_provider_missing_is_vault_locked() -> None:
    secrets = Secrets("a", None)
    with pytest.raises(VaultLocked, match="the secrets of account 'a' are unavailable"):
        secrets["api_key"]


def test_missing_required_setting_is_a_clear_error(venue_engine: Engine) -> None:
    venue_engine.accounts.add("a", "vv")
    with pytest.raises(ValidationError, match="missing required setting 'region' for exchange vv"):
        venue_engine.exchange_for("a")


def test_unknown_account_and_missing_wallet(venue_engine: Engine) -> None:
    with pytest.raises(NotFound, match="no account named 'ghost'"):
        venue_engine.exchange_for("ghost")
    venue_engine.accounts.add("a", "vv", settings={"region": "eu"})
    with pytest.raises(ValidationError, match="account 'a' has no wallet"):
        venue_engine.wallet_for("a")


def test_secrets_require_names_the_field_not_the_value() -> None:
    secrets = Secrets("main", {"api_key": "s3cr3t"})
    assert secrets.require("api_key") == "s3cr3t"
    with pytest.raises(CredentialsError, match="account 'main' has no secret 'api_secret'") as info:
        secrets.require("api_secret")
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(TypeError):
        __import__("pickle").dumps(secrets)


def test_validate_settings() -> None:
    specs = [SettingSpec("region", str, required=True), SettingSpec("retries", int, default=3),
             SettingSpec("sandbox", bool, default=True), SettingSpec("api_key", secret=True, required=True)]
    assert validate_settings(specs, {"region": "eu", "retries": "5"}) == {"region": "eu", "retries": 5, "sandbox": True}
    assert validate_settings(specs, {"api_key": "k"}, secret=True) == {"api_key": "k"}
    with pytest.raises(ValidationError, match="unknown setting 'colour' for exchange x \\(known: region, retries, sandbox\\)"):
        validate_settings(specs, {"region": "eu", "colour": "red"}, owner="exchange x")
    with pytest.raises(ValidationError, match="'api_key' is a secret.*creds set"):
        validate_settings(specs, {"region": "eu", "api_key": "leak"})
    with pytest.raises(ValidationError, match="retries: expected int, got 'many'"):
        validate_settings(specs, {"region": "eu", "retries": "many"})
    with pytest.raises(ValidationError, match="missing required setting 'region'"):
        validate_settings(specs, {})
    assert validate_settings(specs, {"retries": 1}, partial=True) == {"retries": 1}
    with pytest.raises(ValidationError) as info:
        validate_settings([SettingSpec("pin", int, secret=True)], {"pin": "12ab"}, secret=True)
    assert "12ab" not in str(info.value) and "(hidden)" in str(info.value)


# -- tradeguard plugins --json -------------------------------------------------------------


def documented_example() -> dict[str, Any]:
    text = DOCS.read_text()
    block = re.search(r"`tradeguard plugins --json` prints this document.*?```json\n(.*?)```", text, re.S)
    assert block, "docs/plugins.md must show an example of tradeguard plugins --json"
    return json.loads(block.group(1))


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys and types, not the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        shapes = {json.dumps(shape(item), sort_keys=True) for item in value if isinstance(item, dict)}
        assert len(shapes) <= 1, f"list items of different shapes: {shapes}"
        return ["list of", json.loads(shapes.pop())] if shapes else "list"
    return "scalar"  # values (and null) may differ; keys and nesting may not


def test_plugins_json_is_stable_and_documented(dists, sqlite_cli) -> None:
    dists.add("tg-good-plugin", "1.2.3", "good", GOOD_PLUGIN)
    dists.add("tg-broken-plugin", "0.1", "broken", BROKEN_IMPORT)
    data = sqlite_cli.json("plugins", env={"TRADEGUARD_DISABLE_PLUGINS": "0"})
    assert data["format"] == 1
    assert data["third_party"] == {"enabled": True, "only": None}
    by_name = {p["name"]: p for p in data["plugins"]}
    assert list(by_name)[: len(BUILTINS)] == BUILTINS
    assert by_name["good"] == {
        "name": "good", "source": "entrypoint", "distribution": "tg-good-plugin", "version": "1.2.3",
        "hooks": ["register_exchanges", "register_risk_rules"],
        "registered": {"exchanges": ["goodx"], "wallets": [], "risk_rules": ["goodrule"], "backup_targets": []},
    }
    assert by_name["paper"]["source"] == "builtin" and by_name["paper"]["distribution"] is None
    assert data["errors"] == [{"plugin": "broken", "distribution": "tg-broken-plugin",
                               "error": "ModuleNotFoundError: No module named 'tg_no_such_module_anywhere'"}]
    # The documented example has exactly this shape (keys and value types).
    documented = documented_example()
    assert shape(documented) == shape(data)


def test_plugins_text_output_and_errors_on_stderr(dists, sqlite_cli) -> None:
    dists.add("tg-good-plugin", "1.2.3", "good", GOOD_PLUGIN)
    dists.add("tg-broken-plugin", "0.1", "broken", BROKEN_IMPORT)
    result = sqlite_cli("plugins", env={"TRADEGUARD_DISABLE_PLUGINS": "0"})
    assert result.exit_code == 0
    assert re.search(r"^good\s+tg-good-plugin 1\.2\.3\s+register_exchanges, register_risk_rules\s+"
                     r"exchanges: goodx; risk rules: goodrule$", result.stdout, re.M)
    assert "error: plugin broken (tg-broken-plugin): ModuleNotFoundError" in result.stderr
    assert "broken" not in result.stdout


def test_plugins_no_plugins_flag_and_allow_list(dists, sqlite_cli) -> None:
    dists.add("tg-good-plugin", "1.2.3", "good", GOOD_PLUGIN)
    dists.add("tg-broken-plugin", "0.1", "broken", BROKEN_IMPORT)
    result = sqlite_cli("--no-plugins", "--json", "plugins", env={"TRADEGUARD_DISABLE_PLUGINS": "0"})
    data = json.loads(result.stdout)
    assert [p["name"] for p in data["plugins"]] == BUILTINS
    assert data["third_party"] == {"enabled": False, "only": None} and data["errors"] == []
    data = sqlite_cli.json("plugins", env={"TRADEGUARD_DISABLE_PLUGINS": "0", "TRADEGUARD_PLUGINS": "good"})
    assert [p["name"] for p in data["plugins"]] == [*BUILTINS, "good"]
    assert data["third_party"] == {"enabled": True, "only": ["good"]} and data["errors"] == []
    text = sqlite_cli("plugins", env={"TRADEGUARD_DISABLE_PLUGINS": "1"})
    assert "third-party plugins: disabled" in text.stdout


def test_plugins_needs_no_database(tmp_path: Path) -> None:
    """Listing plugins works even when the database is unreachable."""
    from click.testing import CliRunner
    from tradeguard.cli import cli

    result = CliRunner().invoke(cli, ["plugins", "--json"], env={
        "TRADEGUARD_HOME": str(tmp_path), "TRADEGUARD_DISABLE_PLUGINS": "1",
        "TRADEGUARD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["plugins"][0]["name"] == "paper"


# -- the example third-party plugin, in-process -------------------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "plugin-trading-hours"


@pytest.fixture
def trading_hours(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import sys

    monkeypatch.syspath_prepend(str(EXAMPLE))
    import tradeguard_trading_hours

    yield tradeguard_trading_hours
    for name in [m for m in sys.modules if m.startswith("tradeguard_trading_hours")]:
        sys.modules.pop(name)


def test_example_rule_blocks_an_order_through_the_engine(trading_hours: Any, tmp_path: Path, home: Path) -> None:
    from datetime import datetime, timedelta, timezone

    from tradeguard import RiskRejected

    with Engine.open(f"sqlite:///{tmp_path / 'th.db'}", home=home, load_entrypoints=False,
                     plugins=[trading_hours]) as engine:
        engine.accounts.add("bot", "paper", initial_capital="10000")
        rules = {r["rule"]: r for r in engine.risk.rules("bot")}
        assert rules["trading_hours"]["enabled"] is False  # third-party rules start disabled
        engine.risk.enable("bot", "trading_hours")
        with pytest.raises(ValidationError, match="trading_hours.start"):
            engine.risk.set("bot", "trading_hours", {"start": "25:00"})
        later = datetime.now(timezone.utc) + timedelta(hours=2)
        engine.risk.set("bot", "trading_hours", {"start": later.strftime("%H:00"),
                                                 "end": (later + timedelta(hours=1)).strftime("%H:00")})
        with pytest.raises(RiskRejected, match="outside trading hours"):
            engine.place_order("bot", "BTC/USDT", "buy", "0.001")
        engine.risk.set("bot", "trading_hours", {"start": "00:00", "end": "24:00"})
        assert engine.place_order("bot", "BTC/USDT", "buy", "0.001").status.value == "FILLED"


@pytest.mark.parametrize(
    "settings, when, inside",
    [
        ({"start": "22:00", "end": "06:00", "days": "fri"}, "2026-11-27T23:00", True),   # Friday night
        ({"start": "22:00", "end": "06:00", "days": "fri"}, "2026-11-28T05:59", True),   # ... into Saturday
        ({"start": "22:00", "end": "06:00", "days": "fri"}, "2026-11-28T06:00", False),
        ({"start": "22:00", "end": "06:00", "days": "fri"}, "2026-11-27T05:00", False),  # Thursday's window
        ({"start": "09:00", "end": "09:00", "days": "sat,sun"}, "2026-11-29T03:00", True),  # whole day
        ({"start": "00:00", "end": "24:00", "days": "fri-mon"}, "2026-11-30T12:00", True),  # wraps the week
        ({"start": "00:00", "end": "24:00", "days": "fri-mon"}, "2026-11-25T12:00", False),
    ],
)
def test_example_rule_window(trading_hours: Any, settings: dict[str, str], when: str, inside: bool) -> None:
    from datetime import datetime, timezone

    from tradeguard_trading_hours.rule import parse_settings

    moment = datetime.fromisoformat(when).replace(tzinfo=timezone.utc)
    assert parse_settings(settings).contains(moment) is inside


# -- capabilities ------------------------------------------------------------------------------


def test_missing_capability_is_a_clear_bad_input_error() -> None:
    from tradeguard import CapabilityMissing
    from tradeguard.protocols import CAP_NATIVE_OCO, CAP_SET_LEVERAGE, require_capability, supports

    class Spot:
        name = "spotty"
        capabilities = frozenset({CAP_NATIVE_OCO})

    require_capability(Spot(), CAP_NATIVE_OCO)
    assert supports(Spot(), CAP_NATIVE_OCO) and not supports(Spot(), CAP_SET_LEVERAGE)
    with pytest.raises(CapabilityMissing, match="^spotty does not support set leverage$") as info:
        require_capability(Spot(), CAP_SET_LEVERAGE)
    assert info.value.exit_code == 2


def test_adapter_config_carries_testnet_and_api_base_url(venue_engine: Engine) -> None:
    venue_engine.accounts.add("a", "vv", settings={"region": "eu"}, mainnet=True)
    venue_engine.accounts.set("a", api_base_url="https://testnet.example.com/")
    config = venue_engine.exchange_for("a").config
    assert config.testnet is False and config.api_base_url == "https://testnet.example.com"
    with pytest.raises(TypeError):
        config.settings["region"] = "us"  # read-only


def test_duplicate_at_the_cli_is_one_clear_line(dists, sqlite_cli) -> None:
    dists.add("tg-fancy", "1.0", "fancy", DUPLICATE_OF_BUILTIN)
    result = sqlite_cli("plugins", env={"TRADEGUARD_DISABLE_PLUGINS": "0"})
    assert result.exit_code == 1
    assert result.stderr == ("error: exchange 'paper' registered twice: by plugin 'paper' (builtin) "
                             "and by plugin 'fancy' (tg-fancy 1.0)\n")
    # The way out the message implies: leave the plugin out.
    assert sqlite_cli("plugins", env={"TRADEGUARD_DISABLE_PLUGINS": "1"}).exit_code == 0


def test_adapter_is_built_once_for_concurrent_threads(venue_engine: Engine) -> None:
    import threading

    venue_engine.accounts.add("a", "vv", settings={"region": "eu"})
    seen: list[int] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        seen.append(id(venue_engine.exchange_for("a")))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and len(set(seen)) == 1


def test_explicit_plugins_are_named_after_their_module_class_or_name() -> None:
    import types as pytypes

    module = pytypes.ModuleType("my_bot_plugin")  # no __file__, like __main__ under python -c

    class Named:
        name = "named-plugin"

    class Anonymous:
        pass

    manager = PluginManager(load_entrypoints=False, extra=[module, Named(), Anonymous()])
    assert [i.name for i in manager.plugins()][-3:] == ["my_bot_plugin", "named-plugin", "Anonymous"]


def test_the_example_plugins_own_tests_pass(tmp_path: Path) -> None:
    """examples/plugin-trading-hours/tests (the fixture pattern docs/plugins.md shows) stays green."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env["PYTHONPATH"] = str(EXAMPLE)
    env["TRADEGUARD_HOME"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                            cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout

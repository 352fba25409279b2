"""The plugin manager: loads built-in plugins, then entry points of group
``tradeguard``, then plugins passed by embedding code, and keeps one registry
per kind (exchanges, wallets, risk rules, backup targets).

Built-in plugins use exactly the hooks a third-party plugin would.

Failure policy:

- a third-party (entry-point) plugin that fails to import, names a hook that
  does not exist, or whose registration hook raises is left out and reported
  in `PluginManager.load_errors` with its distribution; the others still load;
- a built-in or explicitly passed plugin that does so raises `PluginError`
  (a bug the embedding code must see);
- a name registered twice for one kind raises `DuplicateRegistration` naming
  both plugins, whoever they are;
- an event hook that raises is logged and never breaks the operation that
  fired it (`PluginManager.fire`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
import threading
import types
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import pluggy

from tradeguard import hookspecs
from tradeguard.errors import DuplicateRegistration, NotFound, PluginError
from tradeguard.types import SettingSpec

log = logging.getLogger("tradeguard.plugins")

PROJECT = "tradeguard"
ENTRY_POINT_GROUP = "tradeguard"

#: Built-in plugins, registered first, in this order.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "tradeguard.plugins.paper",
    "tradeguard.plugins.standard_rules",
    "tradeguard.plugins.local_backup",
    "tradeguard.plugins.s3_backup",
    "tradeguard.plugins.binance",
    "tradeguard.plugins.coinbase",
    "tradeguard.plugins.evm",
)

KINDS = ("exchanges", "wallets", "risk_rules", "backup_targets")

#: Registration hook -> the registry it fills.
REGISTRATION_HOOKS = {
    "register_exchanges": "exchanges",
    "register_wallets": "wallets",
    "register_risk_rules": "risk_rules",
    "register_backup_targets": "backup_targets",
}

#: Where a plugin came from.
BUILTIN, ENTRYPOINT, EMBEDDED = "builtin", "entrypoint", "embedded"

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$")


@dataclass(frozen=True)
class Registration:
    """One named implementation a plugin registered."""

    kind: str
    name: str
    factory: Any
    plugin: str
    settings: tuple[SettingSpec, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: where it came from and which hooks it implements."""

    name: str
    source: str  # "builtin", "embedded", or "DIST VERSION" for an installed distribution
    hooks: tuple[str, ...]
    builtin: bool
    origin: str = BUILTIN  # BUILTIN, ENTRYPOINT or EMBEDDED
    distribution: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class LoadError:
    """A third-party plugin that was left out, and why."""

    plugin: str
    distribution: str | None
    error: str


@dataclass(frozen=True)
class _Origin:
    origin: str
    distribution: str | None = None
    version: str | None = None

    @property
    def source(self) -> str:
        if self.origin == ENTRYPOINT:
            return f"{self.distribution} {self.version}" if self.distribution else ENTRYPOINT
        return self.origin

    def describe(self, name: str) -> str:
        return f"{name!r} ({self.source})"


class Registry:
    """Named implementations of one kind, with lookups by name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Registration] = {}

    @property
    def noun(self) -> str:
        return self.kind[:-1].replace("_", " ")

    def add(self, registration: Registration, describe: Any = repr) -> None:
        """Add *registration*; a name already taken raises DuplicateRegistration naming both plugins."""
        existing = self._items.get(registration.name)
        if existing is not None:
            raise DuplicateRegistration(
                f"{self.noun} {registration.name!r} registered twice: "
                f"by plugin {describe(existing.plugin)} and by plugin {describe(registration.plugin)}"
            )
        self._items[registration.name] = registration

    def get(self, name: str) -> Registration:
        """The registration named *name*; NotFound (exit 2) listing the known names otherwise."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise NotFound(f"unknown {self.noun} {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self):
        return iter(sorted(self._items.values(), key=lambda r: r.name))

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)


class PluginManager:
    """Loads plugins and exposes what they registered.

    :param load_entrypoints: load installed third-party plugins (entry points).
    :param allow: if given, only entry-point plugins with these names load.
    :param extra: plugin objects or modules registered last (embedding code, tests).
    """

    def __init__(
        self,
        *,
        load_entrypoints: bool = True,
        allow: Iterable[str] | None = None,
        extra: Sequence[Any] = (),
    ):
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.load_errors: list[LoadError] = []
        self.third_party_enabled = load_entrypoints
        self.allow: tuple[str, ...] | None = tuple(allow) if allow is not None else None
        self._origins: dict[str, _Origin] = {}
        self._lock = threading.RLock()
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
        for module_name in DEFAULT_PLUGINS:
            module = importlib.import_module(module_name)
            self._add_plugin(module, module_name.rsplit(".", 1)[-1], _Origin(BUILTIN))
        if load_entrypoints:
            self._load_entrypoints(set(self.allow) if self.allow is not None else None)
        for plugin in extra:
            self._add_plugin(plugin, _plugin_name(plugin), _Origin(EMBEDDED))
        self._collect()

    # -- loading ---------------------------------------------------------------------------

    def _add_plugin(self, plugin: Any, name: str, origin: _Origin) -> None:
        """Register *plugin* with pluggy and check its hook names (check_pending)."""
        if name in self._origins or self.pm.has_plugin(name):
            raise DuplicateRegistration(
                f"plugin name {name!r} is used twice: {self._origins[name].source} and {origin.source}"
                if name in self._origins
                else f"plugin name {name!r} is used twice"
            )
        if self.pm.is_registered(plugin):
            raise DuplicateRegistration(f"plugin {name!r} is already registered under {self.pm.get_name(plugin)!r}")
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            raise PluginError(f"plugin {name!r}: {_first_line(exc)}") from None
        self._origins[name] = origin

    def _load_entrypoints(self, allow: set[str] | None) -> None:
        seen: set[str] = set()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen or (allow is not None and ep.name not in allow):
                continue
            seen.add(ep.name)
            dist = ep.dist.name if ep.dist else None
            origin = _Origin(ENTRYPOINT, dist, ep.dist.version if ep.dist else None)
            try:
                plugin = ep.load()
                self._add_plugin(plugin, ep.name, origin)
            except Exception as exc:  # a broken plugin must not stop the others
                self._record_error(ep.name, dist, _first_line(exc, with_type=True))
        for missing in sorted((allow or set()) - seen):
            self._record_error(missing, None, "not installed (named in TRADEGUARD_PLUGINS)")

    def _record_error(self, plugin: str, distribution: str | None, message: str) -> None:
        self.load_errors.append(LoadError(plugin, distribution, message))
        log.warning("plugin %s (%s) left out: %s", plugin, distribution or "no distribution", message)

    def _collect(self) -> None:
        """(Re)build every registry from the registration hooks, in registration order.

        A third-party plugin whose registration hook raises is unregistered and
        reported; the collection then starts over without it.
        """
        while True:
            registries = {kind: Registry(kind) for kind in KINDS}
            failed = self._collect_into(registries)
            if failed is None:
                self.registries = registries
                return
            name, message = failed
            origin = self._origins.pop(name)
            self.pm.unregister(name=name)
            self._record_error(name, origin.distribution, message)

    def _collect_into(self, registries: dict[str, Registry]) -> tuple[str, str] | None:
        for hook_name, kind in REGISTRATION_HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            # Registration order (built-in first), each implementation on its own,
            # so every registration names its plugin.
            for impl in hook.get_hookimpls():
                staged: list[Registration] = []
                register = self._register_callback(kind, impl.plugin_name, staged)
                try:
                    impl.function(**{arg: register for arg in impl.argnames})
                except Exception as exc:
                    origin = self._origins.get(impl.plugin_name)
                    if origin is None or origin.origin != ENTRYPOINT:
                        if isinstance(exc, PluginError):
                            raise
                        raise PluginError(f"plugin {impl.plugin_name!r}: {hook_name} failed: {_first_line(exc, with_type=True)}") from exc
                    return impl.plugin_name, f"{hook_name} failed: {_first_line(exc, with_type=True)}"
                for registration in staged:
                    registries[kind].add(registration, self._describe)
        return None

    def _register_callback(self, kind: str, plugin_name: str, staged: list[Registration]) -> Any:
        noun = kind[:-1].replace("_", " ")

        def register(name: str, factory: Any, settings: Sequence[SettingSpec] | None = None, **meta: Any) -> None:
            if not isinstance(name, str) or not NAME_PATTERN.match(name):
                raise PluginError(f"plugin {plugin_name!r} registered a {noun} with an invalid name {name!r}")
            if kind == "risk_rules":
                if not callable(getattr(factory, "check", None)):
                    raise PluginError(f"plugin {plugin_name!r}: risk rule {name!r} has no check(request, context, settings) method")
                if settings is None:
                    settings = getattr(factory, "settings", ())
            elif not callable(factory):
                raise PluginError(f"plugin {plugin_name!r}: {noun} {name!r} needs a callable factory, got {type(factory).__name__}")
            specs = tuple(settings or ())
            for spec in specs:
                if not isinstance(spec, SettingSpec):
                    raise PluginError(f"plugin {plugin_name!r}: {noun} {name!r} settings must be SettingSpec, got {spec!r}")
            names = [spec.name for spec in specs]
            if len(set(names)) != len(names):
                raise PluginError(f"plugin {plugin_name!r}: {noun} {name!r} declares a setting twice")
            staged.append(Registration(kind, name, factory, plugin_name, specs, dict(meta)))

        return register

    def _describe(self, plugin_name: str) -> str:
        origin = self._origins.get(plugin_name)
        return origin.describe(plugin_name) if origin else repr(plugin_name)

    # -- run-time registration (embedding code, tests) -------------------------------------

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register *plugin* (an object or module with ``@hookimpl`` functions) after the others.

        Rebuilds the registries; a misspelt hook or a duplicate name raises and
        leaves the manager as it was. Returns the plugin's name.
        """
        with self._lock:
            name = name or _plugin_name(plugin)
            self._add_plugin(plugin, name, _Origin(EMBEDDED))
            try:
                self._collect()
            except Exception:
                self._origins.pop(name, None)
                self.pm.unregister(name=name)
                self._collect()
                raise
            return name

    def unregister(self, name: str) -> None:
        """Remove the plugin registered as *name* and what it registered."""
        with self._lock:
            if name not in self._origins:
                raise NotFound(f"no plugin named {name!r} is registered")
            self.pm.unregister(name=name)
            del self._origins[name]
            self._collect()

    # -- lookups ---------------------------------------------------------------------------

    @property
    def exchanges(self) -> Registry:
        return self.registries["exchanges"]

    @property
    def wallets(self) -> Registry:
        return self.registries["wallets"]

    @property
    def risk_rules(self) -> Registry:
        return self.registries["risk_rules"]

    @property
    def backup_targets(self) -> Registry:
        return self.registries["backup_targets"]

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin in registration order (built-in, entry points, embedded)."""
        infos = []
        for name, origin in self._origins.items():
            plugin = self.pm.get_plugin(name)
            hooks = tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))
            infos.append(PluginInfo(name, origin.source, hooks, origin.origin == BUILTIN,
                                    origin.origin, origin.distribution, origin.version))
        return infos

    def registered_by(self, plugin_name: str) -> dict[str, list[str]]:
        """What *plugin_name* registered, by kind (kinds with nothing left out)."""
        return {
            kind: [r.name for r in registry if r.plugin == plugin_name]
            for kind, registry in self.registries.items()
            if any(r.plugin == plugin_name for r in registry)
        }

    # -- events ----------------------------------------------------------------------------

    def listens(self, hook_name: str) -> bool:
        """Whether any plugin implements the event hook *hook_name* (callers skip building its arguments if not)."""
        hook = getattr(self.pm.hook, hook_name, None)
        return hook is not None and bool(hook.get_hookimpls())

    def fire(self, hook_name: str, **kwargs: Any) -> list[tuple[str, BaseException]]:
        """Call an event hook's implementations one by one; a failing one is logged, never raised.

        Call this after the change is committed. Returns the failures as
        ``(plugin name, exception)`` pairs (for tests and diagnostics).
        A hook name or arguments that do not match the spec are a bug in the
        caller and raise TypeError.
        """
        hook = getattr(self.pm.hook, hook_name, None)
        if hook is None or not hook_name.startswith("on_"):
            raise TypeError(f"{hook_name!r} is not an event hook")
        expected = set(hook.spec.argnames) if hook.spec else set(kwargs)
        if set(kwargs) != expected:
            raise TypeError(f"{hook_name} takes {sorted(expected)}, got {sorted(kwargs)}")
        failures: list[tuple[str, BaseException]] = []
        for impl in reversed(hook.get_hookimpls()):
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:
                failures.append((impl.plugin_name, exc))
                log.exception("event hook %s of plugin %s failed (ignored)", hook_name, impl.plugin_name)
        return failures

    def add_commands(self, cli: Any) -> None:
        """Let plugins add click commands (``register_commands``); a failure is reported, not raised."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(**{arg: cli for arg in impl.argnames})
            except Exception as exc:
                origin = self._origins.get(impl.plugin_name)
                self._record_error(impl.plugin_name, origin.distribution if origin else None,
                                   f"register_commands failed: {_first_line(exc, with_type=True)}")


def _plugin_name(plugin: Any) -> str:
    """The name an explicitly passed plugin is registered under."""
    name = plugin.__name__ if isinstance(plugin, (type, types.ModuleType)) else None
    if name is None:
        candidate = getattr(plugin, "name", None)
        name = candidate if isinstance(candidate, str) and candidate else type(plugin).__name__
    return str(name)


def _first_line(exc: BaseException, *, with_type: bool = False) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if with_type else text or type(exc).__name__


def get_hookspec_names() -> list[str]:
    """Names of every hook specification (used by the docs and test meta-tests)."""
    return sorted(
        name for name in dir(hookspecs)
        if name.startswith(("register_", "on_")) and callable(getattr(hookspecs, name))
    )

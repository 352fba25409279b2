"""The plugin manager: loads built-in plugins, then entry points of group
``tradeguard``, then plugins passed by embedding code, and keeps one registry
per kind (exchanges, wallets, risk rules, backup targets).

Built-in plugins use exactly the hooks a third-party plugin would.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

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
)

KINDS = ("exchanges", "wallets", "risk_rules", "backup_targets")


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
    name: str
    source: str  # "builtin", or "DIST VERSION"
    hooks: tuple[str, ...]
    builtin: bool


@dataclass(frozen=True)
class LoadError:
    plugin: str
    distribution: str | None
    error: str


class Registry:
    """Named implementations of one kind, with lookups by name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Registration] = {}

    def add(self, registration: Registration) -> None:
        existing = self._items.get(registration.name)
        if existing is not None:
            raise DuplicateRegistration(
                f"{self.kind[:-1].replace('_', ' ')} {registration.name!r} registered twice: "
                f"by plugin {existing.plugin!r} and by plugin {registration.plugin!r}"
            )
        self._items[registration.name] = registration

    def get(self, name: str) -> Registration:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise NotFound(f"unknown {self.kind[:-1].replace('_', ' ')} {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self):
        return iter(sorted(self._items.values(), key=lambda r: r.name))

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
        self._sources: dict[str, tuple[str, bool]] = {}
        for module_name in DEFAULT_PLUGINS:
            module = importlib.import_module(module_name)
            self._register(module, module_name.rsplit(".", 1)[-1], "builtin", builtin=True)
        if load_entrypoints:
            self._load_entrypoints(set(allow) if allow is not None else None)
        for index, plugin in enumerate(extra):
            name = getattr(plugin, "__name__", None) or getattr(plugin, "name", None) or f"{type(plugin).__name__}-{index}"
            self._register(plugin, str(name), "embedded", builtin=False)
        self.registries = {kind: Registry(kind) for kind in KINDS}
        self._collect()

    # -- loading ---------------------------------------------------------------------------

    def _register(self, plugin: Any, name: str, source: str, *, builtin: bool) -> None:
        if self.pm.has_plugin(name) or name in self._sources:
            raise DuplicateRegistration(f"plugin name {name!r} is used twice ({self._sources.get(name, ('?',))[0]} and {source})")
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            raise PluginError(f"plugin {name!r}: {exc}") from None
        self._sources[name] = (source, builtin)

    def _load_entrypoints(self, allow: set[str] | None) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allow is not None and ep.name not in allow:
                continue
            dist = ep.dist.name if ep.dist else None
            source = f"{dist} {ep.dist.version}" if ep.dist else ep.value
            try:
                plugin = ep.load()
                self._register(plugin, ep.name, source, builtin=False)
            except Exception as exc:  # a broken plugin must not stop the others
                message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                self.load_errors.append(LoadError(ep.name, dist, message))
                log.error("plugin %s (%s) failed to load: %s", ep.name, dist or ep.value, message)

    def _collect(self) -> None:
        hook_kinds = {
            "register_exchanges": "exchanges",
            "register_wallets": "wallets",
            "register_risk_rules": "risk_rules",
            "register_backup_targets": "backup_targets",
        }
        for hook_name, kind in hook_kinds.items():
            hook = getattr(self.pm.hook, hook_name)
            # Call each implementation on its own so every registration names its plugin.
            for impl in reversed(hook.get_hookimpls()):
                registry = self.registries[kind]

                def register(name: str, factory: Any, settings: Sequence[SettingSpec] = (), _plugin: str = impl.plugin_name, _registry: Registry = registry, **meta: Any) -> None:
                    if not isinstance(name, str) or not name:
                        raise PluginError(f"plugin {_plugin!r} registered a {kind} entry without a name")
                    _registry.add(Registration(kind, name, factory, _plugin, tuple(settings), dict(meta)))

                impl.function(register=register)

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
        """Every loaded plugin with its source and the hooks it implements."""
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            source, builtin = self._sources.get(name, ("unknown", False))
            hooks = tuple(sorted(impl.name for impl in self.pm.get_hookcallers(plugin) or ()))
            infos.append(PluginInfo(name, source, hooks, builtin))
        return sorted(infos, key=lambda i: (not i.builtin, i.name))

    def registered_by(self, plugin_name: str) -> dict[str, list[str]]:
        """What *plugin_name* registered, by kind."""
        return {
            kind: [r.name for r in registry if r.plugin == plugin_name]
            for kind, registry in self.registries.items()
            if any(r.plugin == plugin_name for r in registry)
        }

    # -- events ----------------------------------------------------------------------------

    def fire(self, hook_name: str, **kwargs: Any) -> None:
        """Call an event hook's implementations one by one; a failing one is logged, never raised."""
        hook = getattr(self.pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception:
                log.exception("event hook %s of plugin %s failed", hook_name, impl.plugin_name)

    def add_commands(self, cli: Any) -> None:
        """Let plugins add click commands (``register_commands``)."""
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):
            try:
                impl.function(cli=cli)
            except Exception as exc:
                self.load_errors.append(LoadError(impl.plugin_name, None, f"register_commands: {exc}"))
                log.error("plugin %s failed to add commands: %s", impl.plugin_name, exc)


def get_hookspec_names() -> list[str]:
    """Names of every hook specification (used by the docs meta-test)."""
    return sorted(name for name in dir(hookspecs) if name.startswith(("register_", "on_")))

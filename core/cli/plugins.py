"""``tradeguard plugins``: every loaded plugin, where it came from, its hooks and
what it registered, plus the third-party plugins that failed to load.

The ``--json`` shape is documented in docs/plugins.md and kept stable by
tests/test_plugins.py.
"""

from __future__ import annotations

from typing import Any

import click

from tradeguard.cli.output import CliState, emit_json, json_option, pass_state, table
from tradeguard.plugin_manager import KINDS, PluginManager

#: Version of the ``plugins --json`` document; bumped only on an incompatible change.
FORMAT = 1


def plugin_manager_for(settings: Any) -> PluginManager:
    """The plugin manager the settings ask for (TRADEGUARD_PLUGINS, TRADEGUARD_DISABLE_PLUGINS)."""
    allow = [p.strip() for p in settings.plugins.split(",") if p.strip()] if settings.plugins else None
    return PluginManager(load_entrypoints=not settings.disable_plugins, allow=allow)


def describe(manager: PluginManager) -> dict[str, Any]:
    """The ``plugins --json`` document."""
    plugins = []
    for info in manager.plugins():
        registered = manager.registered_by(info.name)
        plugins.append({
            "name": info.name,
            "source": info.origin,
            "distribution": info.distribution,
            "version": info.version,
            "hooks": list(info.hooks),
            "registered": {kind: registered.get(kind, []) for kind in KINDS},
        })
    return {
        "format": FORMAT,
        "third_party": {
            "enabled": manager.third_party_enabled,
            "only": list(manager.allow) if manager.allow is not None else None,
        },
        "plugins": plugins,
        "errors": [
            {"plugin": e.plugin, "distribution": e.distribution, "error": e.error} for e in manager.load_errors
        ],
    }


def attach(cli: click.Group) -> None:
    @cli.command("plugins")
    @json_option
    @pass_state
    def plugins_command(state: CliState) -> None:
        """List plugins: source, hooks implemented, what each registered, and load errors."""
        document = describe(plugin_manager_for(state.settings))
        if state.json:
            emit_json(document)
            return
        rows = []
        for plugin in document["plugins"]:
            source = plugin["source"]
            if plugin["distribution"]:
                source = f"{plugin['distribution']} {plugin['version']}"
            registered = "; ".join(
                f"{kind.replace('_', ' ')}: {', '.join(names)}" for kind, names in plugin["registered"].items() if names
            )
            rows.append({"name": plugin["name"], "source": source,
                         "hooks": ", ".join(plugin["hooks"]), "registered": registered or None})
        table(rows, ["name", "source", "hooks", "registered"])
        if not document["third_party"]["enabled"]:
            click.echo("third-party plugins: disabled")
        elif document["third_party"]["only"] is not None:
            click.echo(f"third-party plugins: only {', '.join(document['third_party']['only']) or '(none)'}")
        for error in document["errors"]:
            where = f" ({error['distribution']})" if error["distribution"] else ""
            click.echo(f"error: plugin {error['plugin']}{where}: {error['error']}", err=True)

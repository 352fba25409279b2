"""Hook specifications: everything a tradeguard plugin can implement.

Registration hooks receive a ``register`` callback, as in ``llm`` and
``datasette``: the host checks names and types, so a plugin only says what it
adds. Event hooks are notifications; an exception in one is logged and never
breaks the operation that fired it.

Implementations may accept fewer arguments than the spec lists.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("tradeguard")
hookimpl = pluggy.HookimplMarker("tradeguard")

Register = Callable[..., None]

# -- registration ------------------------------------------------------------


@hookspec
def register_exchanges(register: Register) -> None:
    """Add exchange adapters.

    Called once when the plugin manager loads. Call
    ``register(name, factory, settings=[SettingSpec, ...])`` for each venue;
    ``factory(config)`` receives an `AdapterConfig` (account name, testnet
    flag, settings, and the account's own secrets) and returns an object that
    implements `tradeguard.protocols.ExchangeAdapter`.

    Example::

        @hookimpl
        def register_exchanges(register):
            register("kraken", KrakenAdapter, settings=[SettingSpec("api_key", secret=True)])
    """


@hookspec
def register_wallets(register: Register) -> None:
    """Add wallet adapters.

    Called once when the plugin manager loads. ``register(name, factory,
    settings=[...])``; ``factory(config)`` returns a
    `tradeguard.protocols.WalletAdapter` for one account.

    Example::

        @hookimpl
        def register_wallets(register):
            register("solana", SolanaWallet)
    """


@hookspec
def register_risk_rules(register: Register) -> None:
    """Add risk rules.

    Called once when the plugin manager loads. ``register(name, rule)`` where
    *rule* implements `tradeguard.protocols.RiskRule` (``check(request,
    context, settings) -> Decision``). Third-party rules are disabled for every
    account until enabled, unless ``rule.enabled_by_default`` is true.

    Example::

        @hookimpl
        def register_risk_rules(register):
            register("trading_hours", TradingHoursRule())
    """


@hookspec
def register_backup_targets(register: Register) -> None:
    """Add backup targets.

    Called once when the plugin manager loads. ``register(scheme, factory)``;
    ``factory(url)`` returns a `tradeguard.protocols.BackupTarget` for URLs of
    that scheme (``file``, ``s3`` …).

    Example::

        @hookimpl
        def register_backup_targets(register):
            register("sftp", SftpTarget)
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands or groups to the ``tradeguard`` CLI.

    Called once when the CLI starts, after plugins are loaded. *cli* is the
    root ``click.Group``.

    Example::

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                click.echo("hi")
    """


# -- events ------------------------------------------------------------------


@hookspec
def on_order_state_changed(order: Any, old_status: str | None, new_status: str) -> None:
    """Called after an order's state change is committed.

    *order* is a read-only snapshot (a dict) of the order row. Return value
    ignored.
    """


@hookspec
def on_risk_rejection(order: Any, decision: Any) -> None:
    """Called after a risk rule blocked an order (the order row is stored as REJECTED).

    *decision* is the combined `Decision` with every rule's verdict in its
    metrics. Return value ignored.
    """


@hookspec
def on_emergency_stop(account: str | None, event: Any) -> None:
    """Called after an emergency stop was recorded.

    *account* is the account name, or None for the whole installation; *event*
    a dict of the `EmergencyEvent` row (counts, reason, source). Return value
    ignored.
    """


@hookspec
def on_resume(account: str | None, by: str, notes: str) -> None:
    """Called after an explicit resume cleared an emergency stop.

    Return value ignored.
    """


@hookspec
def on_sync_finished(account: str, result: Any) -> None:
    """Called after a sync of *account* finished (successfully or not).

    *result* is a dict of the ``sync_logs`` row. Return value ignored.
    """


@hookspec
def on_backup_finished(backup: Any) -> None:
    """Called after a backup was written and recorded.

    *backup* is a dict (id, target, name, size, sha256). Return value ignored.
    """

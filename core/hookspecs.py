"""Hook specifications: everything a tradeguard plugin can implement.

Registration hooks receive a ``register`` callback, as in ``llm`` and
``datasette``: the host checks names and types, so a plugin only says what it
adds. Event hooks are notifications; an exception in one is logged and never
breaks the operation that fired it (see `PluginManager.fire`).

Implementations may accept fewer arguments than the spec lists: hooks evolve by
gaining arguments, never by losing them. Every hook here is documented with its
signature in ``docs/plugins.md`` and has a ``test_hook_<name>`` in
``tests/test_hooks.py``; a meta-test keeps both true.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import pluggy

hookspec = pluggy.HookspecMarker("tradeguard")
hookimpl = pluggy.HookimplMarker("tradeguard")

#: ``register(name, factory, settings=(), **meta)`` — the callback registration hooks receive.
Register = Callable[..., None]

# -- registration --------------------------------------------------------------------------
# Called once, when the plugin manager loads (and again after a plugin is
# registered or unregistered at run time). A duplicate name is an error naming
# both plugins.


@hookspec
def register_exchanges(register: Register) -> None:
    """Add exchange adapters.

    :param register: call ``register(name, factory, settings=[SettingSpec, ...])``
        once per venue. ``factory(config)`` receives a
        `tradeguard.adapters.AdapterConfig` (account name, testnet flag,
        ``api_base_url``, non-secret settings and a lazy accessor for that
        account's own secrets) and returns an object implementing
        `tradeguard.protocols.ExchangeAdapter`. Extra keyword arguments are
        kept as metadata (e.g. ``paper=True``).
    :returns: nothing; the return value is ignored.

    Example::

        @hookimpl
        def register_exchanges(register):
            register("kraken", KrakenAdapter,
                     settings=[SettingSpec("api_key", secret=True, required=True)])
    """


@hookspec
def register_wallets(register: Register) -> None:
    """Add wallet adapters.

    :param register: ``register(name, factory, settings=[...])``;
        ``factory(config)`` receives an `AdapterConfig` and returns a
        `tradeguard.protocols.WalletAdapter` for one account.
    :returns: nothing.

    Example::

        @hookimpl
        def register_wallets(register):
            register("solana", SolanaWallet,
                     settings=[SettingSpec("private_key", secret=True, required=True)])
    """


@hookspec
def register_risk_rules(register: Register) -> None:
    """Add risk rules.

    :param register: ``register(name, rule)`` where *rule* implements
        `tradeguard.protocols.RiskRule` (``check(request, context, settings)
        -> Decision``) and declares its per-account settings in
        ``rule.settings``. Rules from third-party plugins are disabled for every
        account until enabled, unless ``rule.enabled_by_default`` is true.
    :returns: nothing.

    Example::

        @hookimpl
        def register_risk_rules(register):
            register("trading_hours", TradingHoursRule())
    """


@hookspec
def register_backup_targets(register: Register) -> None:
    """Add backup targets.

    :param register: ``register(scheme, factory)``; ``factory(url)`` returns
        a `tradeguard.protocols.BackupTarget` for URLs of that scheme
        (``file``, ``s3``, ``sftp`` …).
    :returns: nothing.

    Example::

        @hookimpl
        def register_backup_targets(register):
            register("sftp", SftpTarget)
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands or groups to the ``tradeguard`` CLI.

    Called once when the CLI starts, after plugins are loaded (not at all with
    ``--no-plugins``). A failure is reported by ``tradeguard plugins`` and the
    rest of the CLI still works.

    :param cli: the root ``click.Group``.
    :returns: nothing.

    Example::

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                click.echo("hi")
    """


# -- events --------------------------------------------------------------------------------
# Notifications after the fact, for alerts and metrics. Called after the change
# is committed; an exception is logged and swallowed. Return values are ignored.


@hookspec
def on_account_changed(action: str, account: Mapping[str, Any]) -> None:
    """Called after an account was added, changed or removed (committed).

    :param action: ``"add"``, ``"set"`` or ``"remove"``.
    :param account: a JSON-ready dict of the account (no secrets); for
        ``"remove"`` only ``{"name", "outcome"}`` (``deleted`` or ``archived``).
    :returns: ignored.

    Example::

        @hookimpl
        def on_account_changed(action, account):
            metrics.increment(f"accounts.{action}")
    """


@hookspec
def on_order_state_changed(order: Mapping[str, Any], old_status: str | None, new_status: str) -> None:
    """Called after an order's state change is committed.

    :param order: a read-only snapshot (a dict) of the order row.
    :param old_status: the previous status, or None for a new order.
    :param new_status: the status now stored (``OrderStatus`` value).
    :returns: ignored.

    Example::

        @hookimpl
        def on_order_state_changed(order, old_status, new_status):
            if new_status == "FILLED":
                notify(f"{order['symbol']} filled")
    """


@hookspec
def on_risk_rejection(order: Mapping[str, Any], decision: Any) -> None:
    """Called after a risk rule blocked an order (stored as REJECTED).

    :param order: a dict of the rejected order row.
    :param decision: the combined `Decision`; every rule's verdict is in its metrics.
    :returns: ignored.

    Example::

        @hookimpl
        def on_risk_rejection(order, decision):
            pager.send(f"{order['account']}: {decision.reason}")
    """


@hookspec
def on_emergency_stop(account: str | None, event: Mapping[str, Any]) -> None:
    """Called after an emergency stop was recorded.

    :param account: the account name, or None for the whole installation.
    :param event: a dict of the ``EmergencyEvent`` row (counts, reason, source).
    :returns: ignored.

    Example::

        @hookimpl
        def on_emergency_stop(account, event):
            pager.send(f"HALTED {account or 'everything'}: {event['reason']}")
    """


@hookspec
def on_resume(account: str | None, by: str, notes: str) -> None:
    """Called after an explicit resume cleared an emergency stop.

    :param account: the account name, or None for the whole installation.
    :param by: who resumed (the attributed actor).
    :param notes: why.
    :returns: ignored.

    Example::

        @hookimpl
        def on_resume(account, by, notes):
            log.info("%s resumed by %s: %s", account, by, notes)
    """


@hookspec
def on_sync_finished(account: str, result: Mapping[str, Any]) -> None:
    """Called after a sync of *account* with its venue finished (successfully or not).

    :param account: the account name.
    :param result: a dict of the ``sync_log`` row (status, counts, error).
    :returns: ignored.

    Example::

        @hookimpl
        def on_sync_finished(account, result):
            if result["status"] != "ok":
                alert(account, result["error"])
    """


@hookspec
def on_backup_finished(backup: Mapping[str, Any]) -> None:
    """Called after a backup was written and recorded.

    :param backup: a dict (id, target, name, size, sha256).
    :returns: ignored.

    Example::

        @hookimpl
        def on_backup_finished(backup):
            log.info("backup %s: %s bytes", backup["name"], backup["size"])
    """

"""`tradeguard.Engine`: the embedding API.

::

    with Engine.open("sqlite:///bot.db", master_key=passphrase) as engine:
        engine.accounts.add("main", "paper")

Threading contract: an Engine may be shared between threads. peewee keeps
one connection per thread, and every public method activates the Engine's
database for the calling thread, so threads never share a connection or a
transaction. Several Engines (different databases) in one process are
independent. asyncio bots call the Engine from a worker thread
(``await asyncio.to_thread(engine.place_order, ...)``); see docs/embedding.md.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import peewee

from tradeguard.config import Settings, load_settings
from tradeguard.errors import SchemaOutdated, TradeguardError, ValidationError
from tradeguard.plugin_manager import PluginManager
from tradeguard.service import in_engine_db
from tradeguard.storage import backend_of, connect, redact_url, register_open, sqlite_path, unregister_open, use_database
from tradeguard.storage import migrations
from tradeguard.storage.models import Setting

log = logging.getLogger("tradeguard")

PROFILES = ("development", "test", "production")


class Engine:
    """One tradeguard installation: a database, its plugins and its services."""

    def __init__(self, settings: Settings, db: peewee.Database, plugins: PluginManager, master_key: Any = None):
        self.settings = settings
        self.db = db
        self.plugins = plugins
        self._master_key = master_key
        self._closed = False
        self._pid = os.getpid()  # a forked child must open its own Engine (see _check_open)
        self._lock = threading.RLock()
        self._adapters: dict[tuple[str, str], Any] = {}
        register_open(db)
        from tradeguard.accounts import Accounts

        self.accounts = Accounts(self)
        from tradeguard.orders import Orders
        from tradeguard.risk import Risk
        from tradeguard.trading_state import Trading

        self.risk = Risk(self)
        self.trading = Trading(self)
        self.orders = Orders(self)
        from tradeguard.audit import AuditTrail
        from tradeguard.vault import Vault

        self.audit = AuditTrail(self)
        self.vault = Vault(self)
        from tradeguard.reporting import Reports

        self.reports = Reports(self)  # reports, exports, replay, order explanations
        from tradeguard.sync import Sync

        self.syncer = Sync(self)  # balances, positions and orders from the venues
        from tradeguard.backup import Backups

        self.backups = Backups(self)  # encrypted backups: create, list, verify, restore, prune
        from tradeguard.wallets import Wallets

        self.wallets = Wallets(self)  # on-chain wallets: keys, balances, transfers, signatures

    # -- opening and closing ---------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        master_key: Any = None,
        plugins: Sequence[Any] = (),
        home: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        load_entrypoints: bool | None = None,
        check_schema: bool = True,
        reconcile: bool = True,
    ) -> "Engine":
        """Open (and, if new, create) the installation at *url*.

        :param url: database URL; default ``sqlite:///HOME/tradeguard.db``.
        :param master_key: what unlocks the vault: a passphrase (str), 32 raw key
            bytes, ``"base64:<44 chars>"`` text or a key file path; the first key
            given to a new installation becomes its master key. A wrong key raises
            WrongMasterKey. None leaves it locked (everything that needs no secret
            still works).
        :param plugins: plugin objects or modules to register after the
            built-in and installed ones.
        :param home: the tradeguard home (default ``$TRADEGUARD_HOME`` or ``~/.tradeguard``).
        :param check_schema: refuse an outdated schema (False only for ``db`` commands).
        :param reconcile: reconcile accounts that have open orders (see `reconcile_open_orders`).
        """
        if settings is None:
            settings = load_settings(cli={"home": str(home) if home else None, "database_url": url})
        elif url is not None:
            settings.values["database_url"] = type(settings.values["database_url"])(url, "cli")
        if load_entrypoints is None:
            load_entrypoints = not settings.disable_plugins
        allow = [p.strip() for p in settings.plugins.split(",") if p.strip()] if settings.plugins else None
        plugin_manager = PluginManager(load_entrypoints=load_entrypoints, allow=allow, extra=plugins)
        database_url = settings.effective_database_url
        if sqlite_path(database_url) is not None and not settings.database_url:
            _ensure_home(settings.home_path)
        db = connect(database_url)
        engine = cls(settings, db, plugins=plugin_manager, master_key=master_key)
        try:
            if check_schema:
                engine._check_schema()
            if master_key is not None:
                # a wrong key raises WrongMasterKey here, before any secret is touched
                engine.vault.unlock(master_key) if check_schema else engine.vault.defer(master_key)
            if check_schema and reconcile:
                engine.reconcile_open_orders()  # one indexed query when no order is open
        except BaseException:
            engine.close()
            raise
        return engine

    def _check_schema(self) -> None:
        with use_database(self.db):
            from tradeguard.dbcopy import refuse_incomplete_copy

            refuse_incomplete_copy(self.db)  # a `db copy` that did not finish
            version = migrations.current(self.db)
            head = migrations.head()
            if version == 0:
                migrations.upgrade(self.db)
                log.info("created a new tradeguard database at schema version %s", head)
            elif version > head:
                raise SchemaOutdated(
                    f"the database is at schema version {version}, newer than this tradeguard knows ({head}): upgrade tradeguard"
                )
            elif version < head:
                if self.profile == "development":
                    log.warning("migrating the development database from version %s to %s", version, head)
                    from tradeguard.backup.premigration import backup_before_migration

                    backup_before_migration(self)  # says where (log warning); refuses to migrate if it cannot
                    migrations.upgrade(self.db)
                else:
                    raise SchemaOutdated(
                        f"the database is at schema version {version}, this tradeguard needs {head}: run `tradeguard db migrate`"
                    )

    def close(self) -> None:
        """Close adapters and the database connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self._pid:  # a forked child: the connections are the parent's, leave them alone
            return
        self.vault.lock()
        with self._lock:  # no adapter is built while they are closed (see _adapter)
            adapters, self._adapters = list(self._adapters.values()), {}
        for adapter in adapters:
            try:
                adapter.close()
            except Exception:
                log.exception("closing adapter %r failed", adapter)
        self.orders.venues.close()
        unregister_open(self.db)
        try:
            self.db.close()
        except peewee.OperationalError:
            pass
        close_all = getattr(self.db, "close_all_threads", None)
        if close_all is not None:  # PostgreSQL: other threads' connections too
            close_all()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TradeguardError("this Engine is closed")
        if os.getpid() != self._pid:  # a connection inherited through fork() would corrupt the database
            raise TradeguardError(
                f"this Engine was opened in process {self._pid}; open a new Engine in each process (after fork)"
            )

    def __repr__(self) -> str:
        return f"<Engine {redact_url(self.url)} {'closed' if self._closed else 'open'}>"

    # -- sync -------------------------------------------------------------------------------

    def sync(self, account: str | None = None, *, source: str = "api", concurrency: int | None = None,
             on_result: Any = None) -> list[Any]:
        """Sync *account* (or every account, with None) with its venue; see `tradeguard.sync`.

        Returns one `SyncResult` per account; a failed account is reported in
        its result (``status == "failed"``) and never stops the others.
        """
        return self.syncer.run(account, source=source, concurrency=concurrency, on_result=on_result)

    # -- adapters ---------------------------------------------------------------------------

    def exchange_for(self, account_name: str) -> Any:
        """The exchange adapter of *account_name*: built on first use, cached, closed with the Engine."""
        return self._adapter("exchange", account_name)

    def wallet_for(self, account_name: str) -> Any:
        """The wallet adapter of *account_name*: built on first use, cached, closed with the Engine."""
        return self._adapter("wallet", account_name)

    def drop_adapters(self, account_name: str) -> None:
        """Close and forget the cached adapters of *account_name* (after its settings or secrets change)."""
        with self._lock:
            for key in [k for k in self._adapters if k[1] == account_name]:
                adapter = self._adapters.pop(key)
                try:
                    adapter.close()
                except Exception:
                    log.exception("closing adapter %r failed", adapter)

    def _adapter(self, kind: str, account_name: str) -> Any:
        from tradeguard.adapters import build_adapter

        with self._lock:
            self._check_open()
            adapter = self._adapters.get((kind, account_name))
            if adapter is None:
                adapter = self._adapters[(kind, account_name)] = build_adapter(self, kind, account_name)
            return adapter

    # -- properties -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.settings.effective_database_url

    @property
    def backend(self) -> str:
        """'sqlite', 'postgres' or 'mysql'."""
        return backend_of(self.db)

    @property
    def profile(self) -> str:
        """The installation's profile (development, test, production), stored in the database."""
        return self.get_setting("profile", "development")

    @in_engine_db
    def get_setting(self, key: str, default: Any = None) -> Any:
        """An installation-wide value from the ``setting`` table."""
        if not self.db.table_exists(Setting._meta.table_name):
            return default
        row = Setting.get_or_none(Setting.key == key)
        return default if row is None else row.value

    @in_engine_db
    def set_setting(self, key: str, value: Any) -> None:
        """Store an installation-wide value."""
        from tradeguard.clock import utcnow

        Setting.insert(key=key, value=value, updated_at=utcnow()).on_conflict(
            conflict_target=[Setting.key], update={Setting.value: value, Setting.updated_at: utcnow()}
        ).execute()

    @in_engine_db
    def set_profile(self, profile: str) -> None:
        if profile not in PROFILES:
            raise ValidationError(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
        self.set_setting("profile", profile)


    # -- the order path (thin wrappers; see tradeguard.orders / risk / trading_state) ------

    def place_order(self, account: str, symbol: str, side: Any, quantity: Any, *, type: str = "market",
                    price: Any = None, stop_loss: Any = None, take_profit: Any = None, leverage: Any = 1,
                    reduce_only: bool = False, client_order_id: str | None = None, actor: str = "api",
                    reason: str | None = None, run: Any = None, max_retries: int | None = None,
                    bot: str | None = None) -> Any:
        """Check, record and send an order (`tradeguard.orders.service.Orders.place`); returns the Order row.

        *actor* says who places it (a person, ``bot:NAME``), *run* the `BotRun` (or its id), *reason* why.
        Raises RiskRejected / EmergencyStopActive / ConfirmationRequired (each with ``order_id``) when
        the order was stored but not sent, ValidationError for bad input (nothing stored),
        VenueRejected / VenueUnavailable when the venue refused it or did not answer.
        """
        return self.orders.place(account, symbol, side, quantity, type=type, price=price, stop_loss=stop_loss,
                                 take_profit=take_profit, leverage=leverage, reduce_only=reduce_only,
                                 client_order_id=client_order_id, actor=actor, reason=reason, run=run,
                                 max_retries=max_retries, bot=bot)

    def cancel_order(self, order_id: Any, *, actor: str = "api", reason: str | None = None) -> Any:
        """Cancel an order and its protective children."""
        return self.orders.cancel(order_id, actor=actor, reason=reason)

    def confirm_order(self, order_id: Any, *, by: str) -> Any:
        """Confirm and send an order waiting for confirmation."""
        return self.orders.confirm(order_id, by=by)

    def reconcile(self, account: str) -> dict[str, Any]:
        """Bring *account*'s open orders up to date with its venue."""
        return self.orders.reconcile(account)

    def reconcile_open_orders(self) -> dict[str, Any]:
        """Reconcile every account that has orders the venue may still act on (cheap when there are none).

        A venue that cannot be reached is logged, never raised: opening must work while a venue is down.
        """
        results: dict[str, Any] = {}
        from tradeguard.storage.models import Account as _Account

        for account_id in self.orders.accounts_to_reconcile():
            with use_database(self.db):
                name = _Account.get_by_id(account_id).name
            try:
                results[name] = self.orders.reconcile(name)
            except Exception as exc:  # never stop an Engine from opening
                log.warning("reconciliation of account %s failed: %s", name, exc)
                results[name] = {"error": str(exc)}
        return results

    def emergency_stop(self, account: str | None = None, *, reason: str, source: str = "api",
                       cancel_orders: bool = True, liquidate: bool = False) -> dict[str, Any]:
        """HALT an account (None: every account) first, then cancel orders and optionally liquidate."""
        return self.trading.emergency_stop(account, reason=reason, source=source, cancel_orders=cancel_orders,
                                           liquidate=liquidate)

    def resume(self, account: str | None = None, *, by: str, notes: str = "") -> dict[str, Any]:
        """Clear a stop or REDUCING state (attributed to *by*)."""
        return self.trading.resume(account, by=by, notes=notes)


def _ensure_home(path: Path) -> None:
    """Create the tradeguard home, private to its owner."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)

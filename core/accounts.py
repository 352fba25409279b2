"""Accounts: add, list, show, change and remove, with every change audited."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Mapping


from tradeguard import audit
from tradeguard.clock import utcnow
from tradeguard.errors import NotFound, ValidationError
from tradeguard.money import non_negative, plain, positive
from tradeguard.service import Service, in_engine_db
from tradeguard.orders.locking import write_transaction
from tradeguard.storage import rows
from tradeguard.storage.models import Account, Order, Trade
from tradeguard.types import TradingMode

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: Limit name -> (parser, help). Money limits are USD notional.
LIMITS: dict[str, tuple[Any, str]] = {
    "max_position_size": (non_negative, "largest position, USD notional after the order"),
    "max_daily_loss": (non_negative, "largest loss since 00:00 UTC, realized plus unrealized, USD"),
    "max_open_positions": (None, "most positions open at once"),
    "max_leverage": (positive, "highest leverage an order may use"),
    "slippage_tolerance": (None, "largest market-order price deviation from the ticker, e.g. 0.005 or 0.5%"),
}


def parse_limit(name: str, value: Any) -> Any:
    """Validate one limit value from user input."""
    if name == "max_open_positions":
        text = str(value).strip()
        if not re.fullmatch(r"\d+", text):
            raise ValidationError(f"max_open_positions: expected a whole number >= 0, got {value!r}")
        return int(text)
    if name == "slippage_tolerance":
        text = str(value).strip() if not isinstance(value, Decimal) else value
        if isinstance(text, str) and text.endswith("%"):
            number = non_negative(text[:-1], name) / 100
        else:
            number = non_negative(text, name)
        if number >= 1:
            raise ValidationError(f"slippage_tolerance: {value} is 100% or more; write 0.005 or 0.5% for half a percent")
        return number
    parser, _ = LIMITS[name]
    return parser(value, name)


def account_dict(account: Account) -> dict[str, Any]:
    """A JSON-ready view of an account (no secrets; credential *presence* only)."""
    data = {
        "id": account.id,
        "name": account.name,
        "exchange": account.exchange,
        "mode": account.mode.value,
        "network": "testnet" if account.testnet else "mainnet",
        "trading_state": account.trading_state.value,
        "trading_enabled": account.trading_enabled,
        "require_confirmation": account.require_confirmation,
        "api_base_url": account.api_base_url,
        "wallet_address": account.wallet_address,
        "wallet_network": account.wallet_network,
        "quote_currency": account.quote_currency,
        "limits": {
            "max_position_size": plain(account.max_position_size),
            "max_daily_loss": plain(account.max_daily_loss),
            "max_open_positions": account.max_open_positions,
            "max_leverage": plain(account.max_leverage),
            "slippage_tolerance": plain(account.slippage_tolerance),
        },
        "capital": {
            "initial": plain(account.initial_capital),
            "cash": plain(account.current_cash),
            "frozen": plain(account.frozen_cash),
        },
        "credentials": sorted(c.field for c in account.credentials),
        "credentials_verified": account.credentials_verified,
        "last_balance_sync": account.last_balance_sync.isoformat() if account.last_balance_sync else None,
        "sync_status": account.sync_status,
        "created_at": account.created_at.isoformat(),
        "archived": account.archived_at is not None,
    }
    return data


class Accounts(Service):
    """The Engine's account API (``engine.accounts``)."""

    @in_engine_db
    def add(
        self,
        name: str,
        exchange: str,
        *,
        mode: str | TradingMode = TradingMode.PAPER,
        mainnet: bool = False,
        quote_currency: str = "USDT",
        initial_capital: Any = None,
        settings: Mapping[str, Any] | None = None,
        actor: str = "cli",
        **limits: Any,
    ) -> Account:
        """Create an account. New accounts are safe: PAPER and testnet unless said
        otherwise; a LIVE account starts with trading disabled and confirmation required."""
        if not NAME_PATTERN.match(name or ""):
            raise ValidationError(f"account name {name!r}: use letters, digits, '_', '-' or '.', at most 64")
        try:
            mode = TradingMode(str(getattr(mode, "value", mode)).upper())
        except ValueError:
            raise ValidationError(f"mode: expected paper or live, got {mode!r}") from None
        self.engine.plugins.exchanges.get(exchange)  # raises NotFound for an unknown venue
        values = {key: parse_limit(key, value) for key, value in limits.items() if value is not None}
        unknown = set(values) - set(LIMITS)
        if unknown:
            raise ValidationError(f"unknown limit(s): {', '.join(sorted(unknown))}")
        capital = non_negative(initial_capital, "initial_capital") if initial_capital is not None else Decimal(0)
        live = mode is TradingMode.LIVE
        with write_transaction(self.engine.db):  # SQLite: take the write lock at BEGIN
            if Account.select().where(Account.name == name).exists():
                raise ValidationError(f"an account named {name!r} already exists")
            account = Account.create(
                name=name,
                exchange=exchange,
                mode=mode,
                testnet=not mainnet,
                trading_enabled=not live,
                require_confirmation=live,
                quote_currency=quote_currency.upper(),
                initial_capital=capital,
                current_cash=capital,
                settings=dict(settings or {}),
                **values,
            )
            audit.append(actor, "account.add", f"account:{name}", {"account": account_dict(account)})
        self.engine.plugins.fire("on_account_changed", action="add", account=account_dict(account))
        return account

    @in_engine_db
    def get(self, name: str, *, include_archived: bool = False) -> Account:
        """The account named *name*; NotFound if there is none."""
        where = "name = {p}" if include_archived else "name = {p} AND archived_at IS NULL"
        found = rows.select(Account, where, (Account.name.db_value(name),))  # pre-built SQL: read on every order
        account = found[0] if found else None
        if account is None:
            raise NotFound(f"no account named {name!r}")
        return account

    @in_engine_db
    def list(self, *, include_archived: bool = False) -> list[Account]:
        """Accounts by name."""
        query = Account.select().order_by(Account.name)
        if not include_archived:
            query = query.where(Account.archived_at.is_null())
        return list(query)

    @in_engine_db
    def set(self, name: str, *, actor: str = "cli", **changes: Any) -> Account:
        """Change limits or flags (``trading_enabled``, ``require_confirmation``,
        ``mainnet``, ``mode``, ``api_base_url``); old and new values are audited."""
        parsed: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None:
                continue
            if key in LIMITS:
                parsed[key] = parse_limit(key, value)
            elif key in ("trading_enabled", "require_confirmation"):
                parsed[key] = bool(value)
            elif key == "mainnet":
                parsed["testnet"] = not bool(value)
            elif key == "mode":
                try:
                    parsed["mode"] = TradingMode(str(getattr(value, "value", value)).upper())
                except ValueError:
                    raise ValidationError(f"mode: expected paper or live, got {value!r}") from None
            elif key == "api_base_url":
                parsed[key] = _check_base_url(value)
            else:
                raise ValidationError(f"cannot set {key!r} on an account")
        if not parsed:
            raise ValidationError("nothing to change: give at least one option")
        with write_transaction(self.engine.db):  # SQLite: take the write lock at BEGIN
            account = self.get(name)
            old = {key: _jsonable(getattr(account, key)) for key in parsed}
            for key, value in parsed.items():
                setattr(account, key, value)
            account.updated_at = utcnow()
            account.save()
            new = {key: _jsonable(getattr(account, key)) for key in parsed}
            audit.append(actor, "account.set", f"account:{name}", {"old": old, "new": new})
        self.engine.plugins.fire("on_account_changed", action="set", account=account_dict(account))
        return account

    @in_engine_db
    def remove(self, name: str, *, actor: str = "cli") -> str:
        """Delete an account without history, or archive one with history.

        Returns ``"deleted"`` or ``"archived"``; an archived account keeps its
        orders, trades and audit entries.
        """
        with write_transaction(self.engine.db):  # SQLite: take the write lock at BEGIN
            account = self.get(name)
            has_history = (
                Order.select().where(Order.account == account).exists()
                or Trade.select().where(Trade.account == account).exists()
            )
            if has_history:
                account.archived_at = utcnow()
                account.trading_enabled = False
                account.save()
                outcome = "archived"
            else:
                account.delete_instance(recursive=True)
                outcome = "deleted"
            audit.append(actor, "account.remove", f"account:{name}", {"outcome": outcome})
        self.engine.plugins.fire("on_account_changed", action="remove", account={"name": name, "outcome": outcome})
        return outcome


def _check_base_url(value: Any) -> str | None:
    text = str(value).strip()
    if text in ("", "default", "none"):
        return None
    if not re.match(r"^https?://[^\s/]+", text):
        raise ValidationError(f"api_base_url: expected an http(s) URL, got {text!r}")
    return text.rstrip("/")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    return getattr(value, "value", value)

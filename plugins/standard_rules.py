"""The standard risk rules (built-in plugin, registered through
``register_risk_rules`` like any third-party rule).

Each rule's thresholds have one meaning, documented in docs/risk.md. Limits
the account row carries (``account set --max-position-size`` …) are read from
the account; settings declared here (``tradeguard risk set``) tune the rule.
Limit rules warn (a WARNING risk log, the order passes) once an order uses
``warn_at`` (80% by default) of the limit.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any, Mapping

from tradeguard.hookspecs import hookimpl
from tradeguard.money import plain
from tradeguard.types import (Decision, MarketKind, OrderRequest, OrderType, SettingSpec, Side, TradingMode,
                              TradingState)

WARN_AT = SettingSpec("warn_at", Decimal, default="0.8", help="fraction of the limit that logs a WARNING")
CTX = decimal.Context(prec=60)


def _n(value: Decimal) -> str:
    """A number for messages: at most 8 decimals, no exponent."""
    if not value.is_finite():
        return str(value)
    return plain(value.quantize(Decimal("0.00000001"), context=CTX))


class Rule:
    """Base of the standard rules."""

    name = ""
    description = ""
    settings: tuple[SettingSpec, ...] = ()
    enabled_by_default = True
    mandatory = False

    def check(self, request: OrderRequest, context: Any, settings: Mapping[str, Any]) -> Decision:  # pragma: no cover
        raise NotImplementedError


def _near(rule: str, used: Decimal, limit: Decimal, settings: Mapping[str, Any], what: str, /, **metrics: Any) -> Decision:
    warn_at = settings.get("warn_at", Decimal("0.8"))
    if limit > 0 and used >= limit * warn_at:
        return Decision.warn(f"{what} {_n(used)} is {_n(used / limit * 100)}% of the limit {_n(limit)}", **metrics)
    return Decision.allow(**metrics)


class TradingEnabled(Rule):
    name = "trading_enabled"
    description = "the account's trading switch (`account set --enable-trading`) must be on"

    def check(self, request, context, settings):
        if not context.account.trading_enabled:
            return Decision.block(f"trading is disabled on account {context.account.name} "
                                  f"(`tradeguard account set {context.account.name} --enable-trading`)")
        return Decision.allow()


class EmergencyStop(Rule):
    name = "emergency_stop"
    description = "the trading state: HALTED refuses every order, REDUCING only exposure-reducing ones"
    mandatory = True

    def check(self, request, context, settings):
        state = context.trading_state
        if state is TradingState.HALTED:
            return Decision.block(f"trading is HALTED on account {context.account.name}"
                                  f"{' (installation-wide)' if context.installation_state is TradingState.HALTED else ''}"
                                  f"; `tradeguard resume` clears it", state=state.value)
        if state is TradingState.REDUCING and not context.is_reducing:
            return Decision.block(f"account {context.account.name} is REDUCING: only orders that reduce the "
                                  f"position pass (position {_n(context.position_quantity)})", state=state.value)
        return Decision.allow(state=state.value)


class LiveRequiresTrading(Rule):
    name = "live_trading"
    description = "a LIVE account trades only with trading enabled (new LIVE accounts start disabled)"
    mandatory = True

    def check(self, request, context, settings):
        if context.account.mode is TradingMode.LIVE and not context.account.trading_enabled:
            return Decision.block(f"LIVE account {context.account.name} has trading disabled")
        return Decision.allow()


class RequireConfirmation(Rule):
    name = "require_confirmation"
    description = "LIVE orders on accounts with require_confirmation wait for `order confirm`"
    mandatory = True

    def check(self, request, context, settings):
        if context.account.mode is TradingMode.LIVE and context.account.require_confirmation:
            return Decision.confirm("LIVE account requires confirmation")
        return Decision.allow()


class TestnetOnly(Rule):
    name = "testnet_only"
    description = "an account not explicitly mainnet (`account set --mainnet`) never trades on a mainnet venue"
    mandatory = True

    def check(self, request, context, settings):
        if context.account.testnet and not context.venue_testnet:
            return Decision.block(f"account {context.account.name} is testnet-only but its venue is on mainnet")
        return Decision.allow(venue="testnet" if context.venue_testnet else "mainnet")


class MaxPositionSize(Rule):
    name = "max_position_size"
    description = "|position after this order and the active orders on its side| × price ≤ account max_position_size (USD)"
    settings = (WARN_AT,)

    def check(self, request, context, settings):
        if context.is_reducing:
            return Decision.allow("reduces the position")
        limit = context.account.max_position_size
        with decimal.localcontext(CTX):
            size = abs(context.projected_quantity) * context.price
        metrics = {"position_after": size, "limit": limit}
        if size > limit:
            return Decision.block(f"position after the order {_n(size)} > max_position_size {_n(limit)}", **metrics)
        return _near(self.name, size, limit, settings, "position after the order", **metrics)


class MaxOpenPositions(Rule):
    name = "max_open_positions"
    description = "positions open at once (counting active orders that open one) ≤ account max_open_positions"
    settings = (WARN_AT,)

    def check(self, request, context, settings):
        if context.is_reducing:
            return Decision.allow("reduces a position")
        symbols = context.open_symbols
        limit = context.account.max_open_positions
        count = len(symbols | {request.symbol})
        metrics = {"open_positions": count, "limit": limit}
        if request.symbol not in symbols and count > limit:
            return Decision.block(f"{count} open positions > max_open_positions {limit}", **metrics)
        return _near(self.name, Decimal(count), Decimal(limit), settings, "open positions", **metrics)


class MaxLeverage(Rule):
    name = "max_leverage"
    description = "the order's leverage ≤ account max_leverage"

    def check(self, request, context, settings):
        limit = context.account.max_leverage
        if request.leverage > limit:
            return Decision.block(f"leverage {_n(request.leverage)} > max_leverage {_n(limit)}",
                                  leverage=request.leverage, limit=limit)
        return Decision.allow(leverage=request.leverage, limit=limit)


class MaxDailyLoss(Rule):
    name = "max_daily_loss"
    description = ("realized PnL since 00:00 UTC minus fees plus unrealized PnL; once the loss reaches "
                   "max_daily_loss only risk-reducing orders pass (optionally an automatic emergency stop)")
    settings = (WARN_AT, SettingSpec("auto_stop", bool, default=False,
                                     help="HALT the account when the limit is reached"))

    def check(self, request, context, settings):
        limit = context.account.max_daily_loss
        loss = context.daily_loss
        metrics = {"daily_loss": loss, "limit": limit}
        if loss >= limit:
            if context.is_reducing:
                return Decision.allow("daily loss limit reached; the order reduces risk", **metrics)
            return Decision.block(f"daily loss {_n(loss)} ≥ max_daily_loss {_n(limit)}: only risk-reducing orders",
                                  trigger_emergency_stop=bool(settings.get("auto_stop")), **metrics)
        return _near(self.name, loss, limit, settings, "daily loss", **metrics)


class SlippageTolerance(Rule):
    name = "slippage_tolerance"
    description = ("market orders: |execution price (ask for buys, bid for sells) − reference| / reference ≤ "
                   "account slippage_tolerance; the reference is the order's price if given, else the last price")

    def check(self, request, context, settings):
        if request.type != OrderType.MARKET:
            return Decision.allow("limit order")
        ticker = context.ticker
        if ticker is None:
            context.mark_price  # raises MissingData: fail closed
        execution = (ticker.ask if request.side is Side.BUY else ticker.bid) or ticker.last
        reference = request.price or ticker.last
        tolerance = context.account.slippage_tolerance
        with decimal.localcontext(CTX):
            deviation = abs(execution - reference) / reference
        metrics = {"deviation": deviation, "tolerance": tolerance, "execution": execution, "reference": reference}
        if deviation > tolerance:
            return Decision.block(f"expected slippage {_n(deviation * 100)}% > tolerance {_n(tolerance * 100)}%", **metrics)
        return Decision.allow(**metrics)


class OrderRateLimit(Rule):
    name = "order_rate_limit"
    description = "orders created on the account in the last 60 seconds < max_orders_per_minute"
    settings = (SettingSpec("max_orders_per_minute", int, default=60, help="orders per rolling minute"), WARN_AT)

    def check(self, request, context, settings):
        limit = int(settings.get("max_orders_per_minute", 60))
        count = context.orders_since(60, cap=limit)  # the check needs no more than the limit
        metrics = {"orders_last_minute": count, "limit": limit}
        if count >= limit:
            return Decision.block(f"{count} orders in the last minute ≥ max_orders_per_minute {limit}", **metrics)
        return _near(self.name, Decimal(count + 1), Decimal(limit), settings, "orders this minute", **metrics)


class MarginGuard(Rule):
    name = "margin_guard"
    description = ("leveraged orders: equity / margin used after the order must stay ≥ 1 + margin_threshold; "
                   "below it the order is refused and the metrics say how much margin to add (add_margin_pct)")
    settings = (SettingSpec("margin_threshold", Decimal, default="0.2", help="required equity cushion over margin"),
                SettingSpec("add_margin_pct", Decimal, default="0.1", help="suggested top-up, fraction of margin used"))

    def check(self, request, context, settings):
        if request.leverage <= 1 and request.market is MarketKind.SPOT:
            return Decision.allow("not leveraged")
        if context.is_reducing:
            return Decision.allow("reduces a position")
        with decimal.localcontext(CTX):
            used = sum((abs(p.quantity) * p.average_cost / (p.leverage or 1) for p in context.positions), Decimal(0))
            used += context.order_notional / request.leverage
            equity = context.equity
            threshold = settings.get("margin_threshold", Decimal("0.2"))
            level = equity / used if used else Decimal("Infinity")
            metrics = {"equity": equity, "margin_used": used, "margin_level": level if used else None,
                       "threshold": 1 + threshold}
            if used and level < 1 + threshold:
                add = used * settings.get("add_margin_pct", Decimal("0.1"))
                return Decision.block(f"margin level {_n(level)} < {_n(1 + threshold)}: add about {_n(add)} margin",
                                      suggested_add_margin=add, **metrics)
        return Decision.allow(**metrics)


class AvailableBalance(Rule):
    name = "available_balance"
    description = "buys need the cash they reserve (cash − reservations); spot sells need the base asset held"

    def check(self, request, context, settings):
        from tradeguard.orders.service import reservation_for

        amount, asset = reservation_for(context)
        if asset == context.account.quote_currency:
            available = context.available_cash
            metrics = {"needed": amount, "available": available}
            if amount > available:
                return Decision.block(f"order needs {_n(amount)} {asset}, {_n(available)} available", **metrics)
            return Decision.allow(**metrics)
        if request.side is Side.SELL and request.market is MarketKind.SPOT:
            held = context.position_quantity
            pending = context.pending_quantity(Side.SELL, reducing=False)
            free = held - (pending if not request.reduce_only else 0)
            if request.quantity > free:
                return Decision.block(f"sell {_n(request.quantity)} {request.base} > {_n(free)} held and not "
                                      f"reserved", held=held, reserved=pending)
        return Decision.allow()


STANDARD_RULES = (TradingEnabled(), EmergencyStop(), LiveRequiresTrading(), RequireConfirmation(), TestnetOnly(),
                  AvailableBalance(), MaxPositionSize(), MaxOpenPositions(), MaxLeverage(), MaxDailyLoss(),
                  SlippageTolerance(), OrderRateLimit(), MarginGuard())


@hookimpl
def register_risk_rules(register):
    """Register the standard rules (enabled for every account; the mandatory ones cannot be disabled)."""
    for rule in STANDARD_RULES:
        register(rule.name, rule, settings=rule.settings, mandatory=rule.mandatory)

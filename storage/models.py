"""The tables. One model per table; money columns are exact `DecimalField`s,
timestamps `UTCDateTimeField`s, enumerations checked by the database.

The schema is created and changed only by the numbered migrations in
`tradeguard.storage.migrations`; these live models must match the head
migration (tests/test_migrations.py compares them).
"""

from __future__ import annotations

from decimal import Decimal

import peewee as pw

from tradeguard.clock import utcnow
from tradeguard.storage import BaseModel
from tradeguard.storage.fields import DecimalField, EnumField, JSONField, UTCDateTimeField
from tradeguard.types import MarketKind, OrderStatus, OrderType, Side, TradingMode, TradingState

ZERO = Decimal(0)


def _nonneg(column: str) -> pw.Check:
    return pw.Check(f"{column} >= 0")


# -- installation --------------------------------------------------------------------------


class SchemaVersion(BaseModel):
    """One row per applied migration."""

    version = pw.IntegerField(primary_key=True)
    name = pw.CharField(max_length=100)
    applied_at = UTCDateTimeField(default=utcnow)


class Setting(BaseModel):
    """Installation-wide values: the profile, the installation's trading state, vault parameters."""

    key = pw.CharField(max_length=100, primary_key=True)
    value = JSONField()
    updated_at = UTCDateTimeField(default=utcnow)


class VaultKey(BaseModel):
    """A data key (credentials, audit, backup) wrapped by the master key."""

    key_id = pw.CharField(max_length=40, primary_key=True)
    purpose = pw.CharField(max_length=20, constraints=[pw.Check("purpose IN ('credentials', 'audit', 'backup')")])
    wrapped = pw.TextField()
    master_key_id = pw.CharField(max_length=40)
    created_at = UTCDateTimeField(default=utcnow)
    retired_at = UTCDateTimeField(null=True)


# -- accounts ------------------------------------------------------------------------------


class Account(BaseModel):
    """A trading account on one venue (and optionally one wallet)."""

    name = pw.CharField(max_length=64, unique=True)
    exchange = pw.CharField(max_length=40)
    mode = EnumField(TradingMode, default=TradingMode.PAPER)
    testnet = pw.BooleanField(default=True)
    trading_state = EnumField(TradingState, default=TradingState.ACTIVE)
    trading_enabled = pw.BooleanField(default=True)
    require_confirmation = pw.BooleanField(default=False)
    settings = JSONField(default=dict)  # plugin-declared, non-secret settings
    # wallet
    wallet_address = pw.CharField(max_length=64, null=True)
    wallet_network = pw.CharField(max_length=40, null=True)
    api_base_url = pw.CharField(max_length=300, null=True)  # migration 0002
    # risk limits (USD unless said otherwise)
    max_position_size = DecimalField(default=Decimal("1000"), constraints=[_nonneg("max_position_size")])
    max_daily_loss = DecimalField(default=Decimal("100"), constraints=[_nonneg("max_daily_loss")])
    max_open_positions = pw.IntegerField(default=5, constraints=[_nonneg("max_open_positions")])
    max_leverage = DecimalField(default=Decimal("1"), constraints=[_nonneg("max_leverage")])
    slippage_tolerance = DecimalField(default=Decimal("0.005"), constraints=[_nonneg("slippage_tolerance")])
    # capital
    quote_currency = pw.CharField(max_length=16, default="USDT")
    initial_capital = DecimalField(default=ZERO, constraints=[_nonneg("initial_capital")])
    current_cash = DecimalField(default=ZERO)
    frozen_cash = DecimalField(default=ZERO, constraints=[_nonneg("frozen_cash")])
    # sync state
    last_balance_sync = UTCDateTimeField(null=True)
    sync_status = pw.CharField(max_length=20, null=True)
    real_balance_usd = DecimalField(null=True)
    # credential check state
    credentials_verified = pw.BooleanField(default=False)
    credentials_last_tested = UTCDateTimeField(null=True)
    credentials_last_used = UTCDateTimeField(null=True)
    # lifecycle
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)
    last_trade_at = UTCDateTimeField(null=True)
    archived_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("archived_at", "name"), False),)


class Credential(BaseModel):
    """One encrypted secret field of an account (api_key, api_secret, wallet_private_key …)."""

    account = pw.ForeignKeyField(Account, backref="credentials", on_delete="CASCADE")
    field = pw.CharField(max_length=64)
    ciphertext = pw.TextField()
    key_id = pw.CharField(max_length=40)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "field"), True),)


class RiskRuleConfig(BaseModel):
    """A risk rule's switch and settings for one account."""

    account = pw.ForeignKeyField(Account, backref="rule_configs", on_delete="CASCADE")
    rule = pw.CharField(max_length=64)
    enabled = pw.BooleanField()
    settings = JSONField(default=dict)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "rule"), True),)


# -- bot runs ------------------------------------------------------------------------------


class BotRun(BaseModel):
    """One run of a bot under `tradeguard run`."""

    account = pw.ForeignKeyField(Account, backref="runs")
    bot = pw.CharField(max_length=200)
    owner = pw.CharField(max_length=200)  # host:pid
    started_at = UTCDateTimeField(default=utcnow)
    stopped_at = UTCDateTimeField(null=True)
    ticks = pw.IntegerField(default=0)
    orders = pw.IntegerField(default=0)
    exit_reason = pw.CharField(max_length=200, null=True)


class RunnerLease(BaseModel):
    """Who runs a bot on an account right now (one runner per account)."""

    account = pw.ForeignKeyField(Account, unique=True, on_delete="CASCADE")
    owner = pw.CharField(max_length=200)
    run = pw.ForeignKeyField(BotRun, null=True)
    acquired_at = UTCDateTimeField(default=utcnow)
    heartbeat_at = UTCDateTimeField(default=utcnow)


# -- orders and fills ----------------------------------------------------------------------


class Order(BaseModel):
    """An order as tradeguard knows it. Written before anything is sent."""

    account = pw.ForeignKeyField(Account, backref="orders")
    client_order_id = pw.CharField(max_length=64, unique=True)
    exchange_order_id = pw.CharField(max_length=128, null=True, index=True)
    run = pw.ForeignKeyField(BotRun, null=True, backref="order_rows")
    bot = pw.CharField(max_length=200, null=True)
    reason = pw.TextField(null=True)
    market = EnumField(MarketKind, default=MarketKind.SPOT)
    symbol = pw.CharField(max_length=40)
    side = EnumField(Side)
    type = EnumField(OrderType)
    price = DecimalField(null=True)
    quantity = DecimalField(constraints=[pw.Check("quantity > 0")])
    filled_quantity = DecimalField(default=ZERO, constraints=[_nonneg("filled_quantity")])
    average_fill_price = DecimalField(null=True)
    status = EnumField(OrderStatus)
    exchange_status = pw.CharField(max_length=40, null=True)
    filled_at = UTCDateTimeField(null=True)
    fee = DecimalField(default=ZERO, constraints=[_nonneg("fee")])
    fee_currency = pw.CharField(max_length=16, null=True)
    leverage = DecimalField(default=Decimal(1))
    reduce_only = pw.BooleanField(default=False)
    imported = pw.BooleanField(default=False)  # found at the venue, not placed through tradeguard
    # risk
    risk_verdict = pw.CharField(max_length=24, null=True)
    risk_details = JSONField(null=True)
    # confirmation
    confirmed_at = UTCDateTimeField(null=True)
    confirmed_by = pw.CharField(max_length=100, null=True)
    # reservation of cash / asset while the order is open
    reserved_amount = DecimalField(default=ZERO, constraints=[_nonneg("reserved_amount")])
    reserved_asset = pw.CharField(max_length=16, null=True)
    # errors and retries
    error_code = pw.CharField(max_length=64, null=True)
    error_message = pw.TextField(null=True)
    retry_count = pw.IntegerField(default=0)
    max_retries = pw.IntegerField(default=3)
    # stop-loss / take-profit
    stop_loss = DecimalField(null=True)
    take_profit = DecimalField(null=True)
    parent = pw.ForeignKeyField("self", null=True, backref="children")
    # attribution
    created_by = pw.CharField(max_length=100)
    modified_by = pw.CharField(max_length=100, null=True)
    modification_reason = pw.TextField(null=True)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)
    submitted_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = (
            (("account", "status"), False),
            # covers the order-rate rule's count (orders of the last minute, not rejected, not imported)
            (("account", "created_at", "status", "imported"), False),
            (("status",), False),
        )


class OrderEvent(BaseModel):
    """One state transition of an order."""

    order = pw.ForeignKeyField(Order, backref="events", on_delete="CASCADE")
    old_status = pw.CharField(max_length=24, null=True)
    new_status = pw.CharField(max_length=24)
    actor = pw.CharField(max_length=100)
    detail = JSONField(null=True)
    created_at = UTCDateTimeField(default=utcnow)


class Trade(BaseModel):
    """One fill (or on-chain transfer). Unique per account and venue trade id."""

    account = pw.ForeignKeyField(Account, backref="trades")
    order = pw.ForeignKeyField(Order, null=True, backref="trades")
    exchange_trade_id = pw.CharField(max_length=128)
    exchange_timestamp = UTCDateTimeField()
    symbol = pw.CharField(max_length=40)
    side = EnumField(Side)
    price = DecimalField(constraints=[pw.Check("price >= 0")])
    quantity = DecimalField(constraints=[pw.Check("quantity > 0")])
    fee = DecimalField(default=ZERO, constraints=[_nonneg("fee")])
    fee_currency = pw.CharField(max_length=16, null=True)
    fee_rate = DecimalField(null=True)
    usd_value = DecimalField(null=True)
    realized_pnl = DecimalField(default=ZERO)
    price_impact = DecimalField(null=True)
    slippage = DecimalField(null=True)
    taker = pw.BooleanField(default=True)
    imported = pw.BooleanField(default=False)
    # on-chain
    tx_hash = pw.CharField(max_length=80, null=True, index=True)
    block_number = pw.BigIntegerField(null=True)
    gas_used = pw.BigIntegerField(null=True)
    gas_price = DecimalField(null=True)  # wei per gas
    settlement_status = pw.CharField(max_length=20, null=True)
    settled_at = UTCDateTimeField(null=True)
    audit_data = JSONField(null=True)
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("account", "exchange_trade_id"), True),
            (("account", "exchange_timestamp"), False),
        )


class Position(BaseModel):
    """Net holding of one symbol on one account, with average cost and realized PnL."""

    account = pw.ForeignKeyField(Account, backref="positions")
    symbol = pw.CharField(max_length=40)
    market = EnumField(MarketKind, default=MarketKind.SPOT)
    quantity = DecimalField(default=ZERO)  # signed: > 0 long, < 0 short
    average_cost = DecimalField(default=ZERO, constraints=[_nonneg("average_cost")])
    realized_pnl = DecimalField(default=ZERO)
    unrealized_pnl = DecimalField(default=ZERO)
    leverage = DecimalField(default=Decimal(1))
    opened_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)
    closed_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("account", "symbol", "market"), True),)


class PositionSnapshot(BaseModel):
    account = pw.ForeignKeyField(Account, backref="position_snapshots")
    symbol = pw.CharField(max_length=40)
    quantity = DecimalField()
    average_cost = DecimalField()
    mark_price = DecimalField(null=True)
    unrealized_pnl = DecimalField(null=True)
    source = pw.CharField(max_length=20)
    taken_at = UTCDateTimeField(default=utcnow, index=True)


class BalanceSnapshot(BaseModel):
    account = pw.ForeignKeyField(Account, backref="balance_snapshots")
    asset = pw.CharField(max_length=16)
    free = DecimalField(constraints=[_nonneg("free")])
    used = DecimalField(constraints=[_nonneg("used")])
    total = DecimalField(constraints=[_nonneg("total")])
    usd_value = DecimalField(null=True)
    source = pw.CharField(max_length=20)
    taken_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "taken_at"), False),)


class CashFlow(BaseModel):
    """A deposit, withdrawal or transfer: moves equity, is never profit or loss."""

    account = pw.ForeignKeyField(Account, backref="cash_flows")
    kind = pw.CharField(
        max_length=16,
        constraints=[pw.Check("kind IN ('DEPOSIT', 'WITHDRAWAL', 'TRANSFER_IN', 'TRANSFER_OUT', 'UNEXPLAINED')")],
    )
    asset = pw.CharField(max_length=16)
    amount = DecimalField(constraints=[pw.Check("amount > 0")])
    usd_value = DecimalField(null=True)
    external_id = pw.CharField(max_length=128, null=True)
    source = pw.CharField(max_length=20)
    note = pw.TextField(null=True)
    occurred_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "external_id"), True), (("account", "occurred_at"), False))


# -- risk, sync, emergencies ---------------------------------------------------------------


class RiskLog(BaseModel):
    account = pw.ForeignKeyField(Account, backref="risk_logs")
    order = pw.ForeignKeyField(Order, null=True, backref="risk_logs")
    rule = pw.CharField(max_length=64)
    event_type = pw.CharField(max_length=20, constraints=[pw.Check("event_type IN ('BLOCK', 'WARNING', 'CONFIRM')")])
    severity = pw.CharField(max_length=10, constraints=[pw.Check("severity IN ('INFO', 'WARNING', 'CRITICAL')")])
    message = pw.TextField()
    current_position_size = DecimalField(null=True)
    daily_loss = DecimalField(null=True)
    available_balance = DecimalField(null=True)
    total_exposure = DecimalField(null=True)
    action_taken = pw.CharField(max_length=40)
    action_result = pw.CharField(max_length=40, null=True)
    metrics = JSONField(null=True)
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "created_at"), False),)


class SyncLog(BaseModel):
    account = pw.ForeignKeyField(Account, backref="sync_logs")
    sync_type = pw.CharField(max_length=20)
    source = pw.CharField(max_length=20)
    status = pw.CharField(max_length=10, constraints=[pw.Check("status IN ('ok', 'failed')")])
    balance_before = JSONField(null=True)
    balance_after = JSONField(null=True)
    positions_before = JSONField(null=True)
    positions_after = JSONField(null=True)
    duration_ms = pw.IntegerField(default=0)
    api_calls = pw.IntegerField(default=0)
    error_code = pw.CharField(max_length=64, null=True)
    error_message = pw.TextField(null=True)
    started_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "started_at"), False),)


class EmergencyEvent(BaseModel):
    account = pw.ForeignKeyField(Account, null=True, backref="emergency_events")  # NULL: installation
    event_type = pw.CharField(max_length=10, constraints=[pw.Check("event_type IN ('HALT', 'REDUCE')")])
    reason = pw.TextField()
    source = pw.CharField(max_length=100)
    orders_cancelled = pw.IntegerField(default=0)
    orders_cancel_failed = pw.IntegerField(default=0)
    positions_liquidated = pw.IntegerField(default=0)
    affected_accounts = pw.IntegerField(default=0)
    financial_impact = DecimalField(default=ZERO)
    resolved = pw.BooleanField(default=False)
    resolved_at = UTCDateTimeField(null=True)
    resolved_by = pw.CharField(max_length=100, null=True)
    resolution_notes = pw.TextField(null=True)
    created_at = UTCDateTimeField(default=utcnow)


# -- audit and backups ---------------------------------------------------------------------


class AuditLog(BaseModel):
    """Append-only, hash-chained record. ``ts`` is canonical text so the hash is backend-independent."""

    seq = pw.BigIntegerField(primary_key=True)
    ts = pw.CharField(max_length=32)
    actor = pw.CharField(max_length=100)
    action = pw.CharField(max_length=64, index=True)
    subject = pw.CharField(max_length=200)
    payload = pw.TextField()
    prev_hash = pw.CharField(max_length=64)
    hash = pw.CharField(max_length=64)
    seal = pw.CharField(max_length=64, null=True)
    key_id = pw.CharField(max_length=40, null=True)


class AuditCheckpoint(BaseModel):
    """A sealed statement: the chain up to ``seq`` ends in ``head_hash``."""

    seq = pw.BigIntegerField()
    head_hash = pw.CharField(max_length=64)
    seal = pw.CharField(max_length=64)
    key_id = pw.CharField(max_length=40)
    reason = pw.CharField(max_length=40)
    created_at = UTCDateTimeField(default=utcnow)


class Backup(BaseModel):
    target = pw.CharField(max_length=500)
    name = pw.CharField(max_length=200)
    size = pw.BigIntegerField(default=0)
    sha256 = pw.CharField(max_length=64)
    db_kind = pw.CharField(max_length=16)
    schema_version = pw.IntegerField()
    audit_head = pw.CharField(max_length=64, null=True)
    audit_seq = pw.BigIntegerField(null=True)
    status = pw.CharField(max_length=16, default="created")
    created_at = UTCDateTimeField(default=utcnow)
    verified_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("target", "name"), True),)


class PluginState(BaseModel):
    """Small persistent state a plugin keeps (paper exchange books, wallet nonces …)."""

    plugin = pw.CharField(max_length=64)
    key = pw.CharField(max_length=200)
    value = JSONField()
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("plugin", "key"), True),)


ALL_MODELS: tuple[type[BaseModel], ...] = (
    SchemaVersion,
    Setting,
    VaultKey,
    Account,
    Credential,
    RiskRuleConfig,
    BotRun,
    RunnerLease,
    Order,
    OrderEvent,
    Trade,
    Position,
    PositionSnapshot,
    BalanceSnapshot,
    CashFlow,
    RiskLog,
    SyncLog,
    EmergencyEvent,
    AuditLog,
    AuditCheckpoint,
    Backup,
    PluginState,
)

"""``wallet_transfer_limits``: the risk rule every wallet transfer passes.

Registered through ``register_risk_rules`` like any rule, configured per
account in the ``risk_rule_config`` table (``tradeguard wallet limits`` or
``risk set``). The wallet service (`tradeguard.wallets`) runs it inside the
account's lock for every `TransferRequest`, with a `TransferContext` holding
what was already sent today; on an order request it has nothing to say and
allows.

Settings:

* ``daily_limits`` — ``ASSET=AMOUNT,…``: the most of each asset that may
  leave the wallet per UTC day (pending and confirmed transfers count,
  failed and reverted ones do not);
* ``allowed_destinations`` — comma-separated addresses; when set, every
  other destination is refused.

Mainnet accounts fail closed: a transfer in an asset without a daily limit,
or with no allow-list at all, is blocked until both are configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from tradeguard.errors import ValidationError
from tradeguard.money import non_negative
from tradeguard.types import Decision, SettingSpec, TransferRequest

RULE_NAME = "wallet_transfer_limits"


@dataclass(frozen=True)
class TransferContext:
    """What the rule checks a transfer against (read inside the account lock).

    :ivar asset: the asset's symbol as the wallet resolved it (``ETH``, ``USDC`` …).
    :ivar destination: the checksummed destination address.
    :ivar sent_today: amount of *asset* sent since 00:00 UTC (pending or confirmed).
    :ivar mainnet: whether the wallet is on a mainnet network.
    """

    asset: str
    destination: str
    sent_today: Decimal
    mainnet: bool


def parse_daily_limits(text: Any) -> dict[str, Decimal]:
    """``"ETH=0.5,USDC=1000"`` (or a mapping) as {ASSET: Decimal}."""
    if not text:
        return {}
    pairs = text.items() if isinstance(text, Mapping) else (
        part.split("=", 1) if "=" in part else (part, None) for part in str(text).split(",") if part.strip())
    limits: dict[str, Decimal] = {}
    for asset, amount in pairs:
        name = str(asset).strip().upper()
        if not name or amount is None:
            raise ValidationError(f"daily limit {asset!r}: expected ASSET=AMOUNT, e.g. ETH=0.5")
        limits[name] = non_negative(str(amount).strip(), f"daily limit for {name}")
    return limits


def parse_destinations(text: Any) -> list[str]:
    """A comma list (or list) of addresses, checksummed and de-duplicated in order."""
    from tradeguard.plugins.evm.wallet import check_address

    items = text if isinstance(text, (list, tuple)) else str(text or "").split(",")
    result: list[str] = []
    for item in items:
        if str(item).strip():
            address = check_address(str(item).strip(), "allowed destination")
            if address not in result:
                result.append(address)
    return result


class TransferLimitsRule:
    """Daily amount per asset and allow-listed destinations for wallet transfers."""

    name = RULE_NAME
    description = "wallet transfers: most per asset per UTC day, and allow-listed destinations (fails closed on mainnet)"
    enabled_by_default = True
    mandatory = True  # configured, never switched off: on testnet with no settings it allows everything
    settings = (
        SettingSpec("daily_limits", str, default="", help="ASSET=AMOUNT,… most sent per UTC day"),
        SettingSpec("allowed_destinations", str, default="", help="comma-separated addresses; empty: any (testnet only)"),
    )

    def validate_settings(self, settings: Mapping[str, Any]) -> None:
        """Raise ValidationError unless both settings parse (called by ``risk set``)."""
        parse_daily_limits(settings.get("daily_limits"))
        parse_destinations(settings.get("allowed_destinations"))

    def check(self, request: Any, context: Any, settings: Mapping[str, Any]) -> Decision:
        """Allow, or block with the numbers looked at. Orders are not this rule's business."""
        if not isinstance(request, TransferRequest) or not isinstance(context, TransferContext):
            return Decision.allow("applies to wallet transfers only")
        limits = parse_daily_limits(settings.get("daily_limits"))
        allowed = parse_destinations(settings.get("allowed_destinations"))
        asset = context.asset.upper()
        metrics = {"asset": asset, "amount": request.amount, "sent_today": context.sent_today,
                   "destination": context.destination}
        if allowed and context.destination not in allowed:
            return Decision.block(f"destination {context.destination} is not on the account's allow-list", **metrics)
        if not allowed and context.mainnet:
            return Decision.block("mainnet transfers need an allow-list of destinations "
                                  "(`tradeguard wallet limits ACCOUNT --allow ADDRESS`)", **metrics)
        limit = limits.get(asset)
        if limit is None:
            if context.mainnet:
                return Decision.block(f"mainnet transfers of {asset} need a daily limit "
                                      f"(`tradeguard wallet limits ACCOUNT --daily {asset}=AMOUNT`)", **metrics)
            return Decision.allow(f"no daily limit for {asset}", **metrics)
        after = context.sent_today + request.amount
        metrics.update(daily_limit=limit, after=after)
        if after > limit:
            return Decision.block(
                f"daily transfer limit for {asset}: {context.sent_today} sent today + {request.amount} "
                f"would exceed {limit}", **metrics)
        if after > limit * Decimal("0.8"):
            return Decision.warn(f"{after} of the {limit} {asset} daily limit used", **metrics)
        return Decision.allow(f"{after} of the {limit} {asset} daily limit", **metrics)

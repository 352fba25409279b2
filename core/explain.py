"""The decision chain of one order (``tradeguard order explain ID``).

Assembled from what was stored while the order lived: the order row (the
request, who placed it and why, the risk decision with every rule's verdict
and the metrics it used, the confirmation, the venue's ids and status, errors
and retries), its risk-log rows, its fills, its protective children, and the
audit entries whose subject is the order (placement, retries, state changes
with the venue's answers, fills). When the audit trail holds no entry for the
order, its stored state transitions stand in for them.
"""

from __future__ import annotations

import json
from typing import Any

from tradeguard.clock import isoformat, parse_iso
from tradeguard.errors import NotFound
from tradeguard.money import plain
from tradeguard.storage.models import Account, AuditLog, Order, OrderEvent, RiskLog, Trade


def _num(value: Any) -> str | None:
    return None if value is None else plain(value)


def find_order(ref: int | str) -> Order:
    """An order by id or client order id; NotFound otherwise."""
    text = str(ref).strip()
    order = Order.get_or_none(Order.id == int(text)) if text.isdigit() else None
    if order is None:
        order = Order.get_or_none(Order.client_order_id == text)
    if order is None:
        raise NotFound(f"no order {ref!r} (give an order id or a client order id)")
    return order


def explain_order(ref: int | str) -> dict[str, Any]:
    """Everything known about how order *ref* was decided, sent and filled, in time order."""
    order = find_order(ref)
    account = Account.get_by_id(order.account_id)
    subjects = [f"order:{order.client_order_id}", f"order:{order.id}"]
    audit = list(AuditLog.select().where(AuditLog.subject.in_(subjects)).order_by(AuditLog.seq))
    risk_logs = list(RiskLog.select().where(RiskLog.order == order.id).order_by(RiskLog.created_at, RiskLog.id))
    fills = list(Trade.select().where(Trade.order == order.id).order_by(Trade.exchange_timestamp, Trade.id))
    events = list(OrderEvent.select().where(OrderEvent.order == order.id).order_by(OrderEvent.id))
    children = list(Order.select(Order.id, Order.client_order_id, Order.status, Order.type, Order.price)
                    .where(Order.parent == order.id).order_by(Order.id))

    steps: list[dict[str, Any]] = []
    for entry in audit:
        steps.append({"at": entry.ts, "source": f"audit #{entry.seq}", "actor": entry.actor, "what": entry.action,
                      "detail": _payload(entry.payload)})
    if not audit:
        for event in events:
            steps.append({"at": isoformat(event.created_at), "source": "order event", "actor": event.actor,
                          "what": f"{event.old_status or 'new'} -> {event.new_status}", "detail": event.detail or {}})
    for log in risk_logs:
        steps.append({"at": isoformat(log.created_at), "source": "risk log", "actor": "risk",
                      "what": f"{log.event_type} by {log.rule}",
                      "detail": {"severity": log.severity, "message": log.message, "action": log.action_taken,
                                 "result": log.action_result, "metrics": log.metrics}})
    steps.sort(key=lambda s: parse_iso(s["at"]))

    risk = order.risk_details or {}
    return {
        "order": {
            "id": order.id, "client_order_id": order.client_order_id, "account": account.name,
            "status": order.status.value, "imported": order.imported,
        },
        "request": {
            "symbol": order.symbol, "market": order.market.value, "side": order.side.value,
            "type": order.type.value, "quantity": _num(order.quantity), "price": _num(order.price),
            "stop_loss": _num(order.stop_loss), "take_profit": _num(order.take_profit),
            "leverage": _num(order.leverage), "reduce_only": order.reduce_only,
            "placed_by": order.created_by, "bot": order.bot, "run": order.run_id, "reason": order.reason,
            "at": isoformat(order.created_at),
        },
        "risk": {"verdict": order.risk_verdict, "rules": risk.get("rules", [])},
        "confirmation": ({"confirmed_by": order.confirmed_by, "at": isoformat(order.confirmed_at)}
                         if order.confirmed_at else None),
        "venue": {
            "exchange": account.exchange, "exchange_order_id": order.exchange_order_id,
            "exchange_status": order.exchange_status,
            "submitted_at": isoformat(order.submitted_at) if order.submitted_at else None,
            "retries": order.retry_count,
            "error": {"code": order.error_code, "message": order.error_message} if order.error_message else None,
        },
        "fills": [{"trade_id": t.exchange_trade_id, "at": isoformat(t.exchange_timestamp), "side": t.side.value,
                   "quantity": _num(t.quantity), "price": _num(t.price), "fee": _num(t.fee),
                   "fee_currency": t.fee_currency, "realized_pnl": _num(t.realized_pnl)} for t in fills],
        "result": {"filled_quantity": _num(order.filled_quantity),
                   "average_fill_price": _num(order.average_fill_price), "fee": _num(order.fee)},
        "parent": order.parent_id,
        "children": [{"id": c.id, "client_order_id": c.client_order_id, "type": c.type.value,
                      "price": _num(c.price), "status": c.status.value} for c in children],
        "steps": steps,
    }


def _payload(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text

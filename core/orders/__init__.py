"""The order lifecycle: placing, sending, following and reconciling orders.

See `tradeguard.orders.service.Orders` (``engine.orders``).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("Orders", "order_dict", "new_client_order_id"):
        from tradeguard.orders import service

        return getattr(service, name)
    raise AttributeError(name)


__all__ = ["Orders", "new_client_order_id", "order_dict"]

"""The order state machine: which transitions are legal.

An illegal transition is a bug in tradeguard or a venue adapter: it raises
`IllegalTransition` instead of silently overwriting a state.
"""

from __future__ import annotations

from tradeguard.errors import TradeguardError
from tradeguard.types import OrderStatus as S

#: Open (non-final) states: the venue may still act on these orders.
LIVE_STATUSES = frozenset({S.PENDING_SUBMIT, S.OPEN, S.PARTIALLY_FILLED})
#: States that count against limits (reserved, maybe at the venue).
ACTIVE_STATUSES = frozenset({S.PENDING_CONFIRMATION, S.PENDING_SUBMIT, S.OPEN, S.PARTIALLY_FILLED})

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING_CONFIRMATION: frozenset({S.PENDING_SUBMIT, S.CANCELED, S.REJECTED, S.EXPIRED}),
    S.PENDING_SUBMIT: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED, S.FAILED, S.EXPIRED}),
    S.OPEN: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset(),
}


class IllegalTransition(TradeguardError):
    """An order was asked to move between two states the lifecycle does not connect (a bug)."""


def check_transition(old: S | None, new: S) -> None:
    """Raise IllegalTransition unless *old* -> *new* is allowed (*old* None: a new order)."""
    if old is None:
        if new not in (S.PENDING_CONFIRMATION, S.PENDING_SUBMIT, S.REJECTED, S.OPEN):
            raise IllegalTransition(f"a new order cannot start in {new.value}")
        return
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"illegal order transition {old.value} -> {new.value}")

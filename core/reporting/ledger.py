"""Positions and cash rebuilt from fills alone, with the order path's accounting.

The conventions are those of `tradeguard.orders.ledger` (the code that books
fills as they happen), restated here independently so that ``replay`` can
check the stored books against the fills:

* positions are signed (``> 0`` long, ``< 0`` short) per (symbol, market);
* adding to a position averages its cost; reducing it realizes
  ``(price - average_cost) x closed`` (reversed for a short); crossing zero
  closes the old side and opens the rest at the fill price; a flat position
  has average cost 0;
* realized PnL is *gross*: fees are kept apart;
* a fee paid in the quote currency is paid from cash, a fee paid in the base
  asset reduces the position (its average cost is unchanged);
* cash (in the account's quote currency) = initial capital + cash flows
  - bought notional + sold notional - quote fees; equity = cash + sum of
  quantity x mark price. Deposits and withdrawals move equity, never PnL.

Arithmetic runs in a 60-digit Decimal context, like the order path.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable

ZERO = Decimal(0)
#: The order path's context: 60 significant digits.
CONTEXT = decimal.Context(prec=60)


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTC/USDT`` -> (``BTC``, ``USDT``); ``BTC/USDT:USDT`` -> (``BTC``, ``USDT``)."""
    base, _, rest = symbol.partition("/")
    return base, rest.split(":")[0]


@dataclass
class Book:
    """One rebuilt position."""

    symbol: str
    market: str = "spot"
    quantity: Decimal = ZERO
    average_cost: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fills: int = 0


@dataclass(frozen=True)
class FillEffect:
    """What one fill did to its position."""

    realized_pnl: Decimal
    closing: bool  # it reduced (or flipped) an existing position
    quote_fee: Decimal  # the fee in the quote currency (0 if paid in another asset)
    cash_delta: Decimal


@dataclass
class Ledger:
    """Replays fills (oldest first) into positions and cash."""

    cash: Decimal = ZERO
    books: dict[tuple[str, str], Book] = field(default_factory=dict)

    def book(self, symbol: str, market: str = "spot") -> Book:
        """The position for (*symbol*, *market*), created flat."""
        key = (symbol, market)
        if key not in self.books:
            self.books[key] = Book(symbol, market)
        return self.books[key]

    def apply(self, symbol: str, side: str, quantity: Decimal, price: Decimal, fee: Decimal = ZERO,
              fee_currency: str | None = None, market: str = "spot") -> FillEffect:
        """Book one fill; return its realized PnL, whether it closed exposure, and its cash effect."""
        with decimal.localcontext(CONTEXT):
            book = self.book(symbol, market)
            signed = quantity if side == "buy" else -quantity
            qty, cost = book.quantity, book.average_cost
            realized = ZERO
            closing = False
            if qty == 0 or (qty > 0) == (signed > 0):
                new_qty = qty + signed
                book.average_cost = (abs(qty) * cost + abs(signed) * price) / abs(new_qty)
                book.quantity = new_qty
            else:
                closing = True
                closed = min(abs(signed), abs(qty))
                direction = Decimal(1) if qty > 0 else Decimal(-1)
                realized = (price - cost) * closed * direction
                new_qty = qty + signed
                book.quantity = new_qty
                if new_qty == 0:
                    book.average_cost = ZERO
                elif (new_qty > 0) != (qty > 0):
                    book.average_cost = price
            book.realized_pnl += realized
            book.fills += 1
            base, quote = split_symbol(symbol)
            currency = fee_currency or quote
            notional = price * quantity
            cash_delta = -notional if side == "buy" else notional
            quote_fee = ZERO
            if fee:
                if currency == quote:
                    cash_delta -= fee
                    quote_fee = fee
                elif currency == base:
                    book.quantity -= fee
            self.cash += cash_delta
            return FillEffect(realized, closing, quote_fee, cash_delta)

    def open_books(self) -> list[Book]:
        """Positions that are not flat, by symbol."""
        return sorted((b for b in self.books.values() if b.quantity != 0), key=lambda b: (b.symbol, b.market))

    def unrealized(self, marks: dict[str, Decimal]) -> Decimal:
        """Σ quantity x (mark - average cost) over open positions with a mark."""
        with decimal.localcontext(CONTEXT):
            return sum(((marks[b.symbol] - b.average_cost) * b.quantity for b in self.open_books() if b.symbol in marks),
                       ZERO)

    def holdings_value(self, marks: dict[str, Decimal]) -> Decimal:
        """Σ quantity x mark over open positions (a position without a mark is valued at its cost)."""
        with decimal.localcontext(CONTEXT):
            return sum((b.quantity * marks.get(b.symbol, b.average_cost) for b in self.open_books()), ZERO)


def replay_fills(fills: Iterable[tuple[str, str, Decimal, Decimal, Decimal, str | None, str]]) -> Ledger:
    """A ledger built from ``(symbol, side, quantity, price, fee, fee_currency, market)`` tuples."""
    ledger = Ledger()
    for symbol, side, quantity, price, fee, fee_currency, market in fills:
        ledger.apply(symbol, side, quantity, price, fee, fee_currency, market)
    return ledger

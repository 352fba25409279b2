"""Decimal helpers: money is `decimal.Decimal` end to end, never float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from tradeguard.errors import ValidationError


def to_decimal(value: Any, field: str = "value") -> Decimal:
    """Convert user input (str, int, Decimal) to a finite Decimal; floats are refused.

    Raises ValidationError naming *field* for anything else, NaN and Infinity.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise ValidationError(f"{field}: use a Decimal or a string, not {type(value).__name__} ({value!r})")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValidationError(f"{field}: {value!r} is not a number") from None
    else:
        raise ValidationError(f"{field}: {value!r} is not a number")
    if not result.is_finite():
        raise ValidationError(f"{field}: {value} is not a finite number")
    return result


def non_negative(value: Any, field: str = "value") -> Decimal:
    """A finite Decimal >= 0."""
    result = to_decimal(value, field)
    if result < 0:
        raise ValidationError(f"{field}: must not be negative (got {result})")
    return result


def positive(value: Any, field: str = "value") -> Decimal:
    """A finite Decimal > 0."""
    result = to_decimal(value, field)
    if result <= 0:
        raise ValidationError(f"{field}: must be greater than zero (got {result})")
    return result


def plain(value: Decimal) -> str:
    """The canonical text of a Decimal: no exponent, no trailing zeros (``1E-18`` -> ``0.000000000000000001``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text

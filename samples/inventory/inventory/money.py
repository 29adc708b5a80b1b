"""Money helpers: every amount is a Decimal rounded to cents, half-up."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def to_money(value: str | int | float | Decimal) -> Decimal:
    """Convert a number to a Decimal amount rounded to whole cents."""
    if isinstance(value, float):
        value = repr(value)
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def format_money(amount: Decimal, currency: str = "EUR") -> str:
    return f"{to_money(amount):,.2f} {currency}"

"""Pricing: order totals, tax and promotion rules.

Promotion rules are small expressions over `subtotal` kept in the settings file,
for example ``"subtotal * 0.1 if subtotal > 100 else 0"``.
"""

from __future__ import annotations

import math
from decimal import Decimal

from inventory.models import OrderLine
from inventory.money import to_money


def calc_total(lines: list[OrderLine], tax_rate: str = "0", discount: Decimal = Decimal("0")) -> Decimal:
    """Sum the lines, subtract the discount and add tax; never below zero."""
    subtotal = sum((line.amount for line in lines), Decimal("0"))
    taxable = max(subtotal - discount, Decimal("0"))
    return to_money(taxable * (1 + Decimal(tax_rate)))


def evaluate_promotion(rule: str, subtotal: Decimal) -> Decimal:
    """The discount a promotion rule grants on `subtotal`."""
    value = eval(rule, {"__builtins__": {}}, {"subtotal": float(subtotal)})
    return to_money(value)


def discount_for(code: str | None, promotions: dict[str, str], subtotal: Decimal) -> Decimal:
    if code is None or not code in promotions:
        return Decimal("0.00")
    return evaluate_promotion(promotions[code], subtotal)

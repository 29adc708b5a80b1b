from __future__ import annotations

from decimal import Decimal

from inventory.models import OrderLine
from inventory.pricing import calc_total, discount_for, evaluate_promotion


def test_calc_total_adds_tax_and_rounds_half_up():
    lines = [OrderLine("A100", 3, Decimal("0.35")), OrderLine("B200", 1, Decimal("4.90"))]
    assert calc_total(lines) == Decimal("5.95")
    assert calc_total(lines, "0.20") == Decimal("7.14")


def test_calc_total_never_goes_below_zero():
    lines = [OrderLine("A100", 1, Decimal("0.35"))]
    assert calc_total(lines, "0.20", discount=Decimal("5")) == Decimal("0.00")


def test_promotion_rules_are_evaluated_over_the_subtotal():
    rule = "subtotal * 0.1 if subtotal > 100 else 0"
    assert evaluate_promotion(rule, Decimal("250")) == Decimal("25.00")
    assert evaluate_promotion(rule, Decimal("50")) == Decimal("0.00")


def test_unknown_discount_code_gives_no_discount():
    assert discount_for("NOPE", {"TEN": "10"}, Decimal("80")) == Decimal("0.00")
    assert discount_for(None, {"TEN": "10"}, Decimal("80")) == Decimal("0.00")
    assert discount_for("TEN", {"TEN": "10"}, Decimal("80")) == Decimal("10.00")

from __future__ import annotations

from decimal import Decimal

import pytest

from inventory.audit import AuditLog
from inventory.orders import OrderBook, OutOfStock


def test_place_order_reserves_stock_and_prices_with_tax(products, tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    book = OrderBook(products, tax_rate="0.20", audit=audit)
    order = book.place_order("CUS-1", {"A100": 10, "C300": 1})
    assert order.total == Decimal("25.20")
    assert products["A100"].quantity == 490
    assert products["C300"].quantity == 2
    assert [e["order_id"] for e in audit.entries("order.placed")] == [order.order_id]


def test_out_of_stock_reserves_nothing(products):
    book = OrderBook(products)
    with pytest.raises(OutOfStock):
        book.place_order("CUS-1", {"A100": 1, "C300": 4})
    assert products["A100"].quantity == 500


def test_promotion_is_applied_before_tax(products):
    book = OrderBook(products, tax_rate="0.20", promotions={"BULK": "subtotal * 0.1"})
    order = book.place_order("CUS-2", {"B200": 10}, discount_code="BULK")
    assert order.total == Decimal("52.92")


def test_cancel_returns_stock_and_drops_revenue(products):
    book = OrderBook(products)
    order = book.place_order("CUS-3", {"B200": 2})
    assert book.revenue() == Decimal("9.80")
    book.cancel(order.order_id)
    assert products["B200"].quantity == 12
    assert book.revenue() == Decimal("0.00")
    with pytest.raises(ValueError, match="already cancelled"):
        book.cancel(order.order_id)

"""Order book: places orders against stock, prices them and records them."""

from __future__ import annotations

from decimal import Decimal

from inventory.audit import AuditLog
from inventory.ids import new_order_id
from inventory.models import Order, OrderLine, Product
from inventory.pricing import calc_total, discount_for


class OutOfStock(Exception):
    def __init__(self, sku: str, wanted: int, available: int) -> None:
        super().__init__(f"{sku}: wanted {wanted}, only {available} in stock")
        self.sku = sku


class OrderBook:
    def __init__(
        self,
        products: dict[str, Product],
        tax_rate: str = "0",
        promotions: dict[str, str] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.products = products
        self.tax_rate = tax_rate
        self.promotions = promotions or {}
        self.audit = audit
        self.orders: list[Order] = []

    def place_order(
        self, customer_id: str, items: dict[str, int], discount_code: str | None = None
    ) -> Order:
        """Reserve stock for every item, or for none of them, and price the order."""
        lines = []
        for sku, quantity in items.items():
            product = self.products[sku]
            if product.quantity < quantity:
                raise OutOfStock(sku, quantity, product.quantity)
            lines.append(OrderLine(sku, quantity, product.unit_price))
        for line in lines:
            self.products[line.sku].quantity -= line.quantity
        subtotal = calc_total(lines)
        discount = discount_for(discount_code, self.promotions, subtotal)
        order = Order(new_order_id(), customer_id, lines, discount_code)
        order.total = calc_total(lines, self.tax_rate, discount)
        self.orders.append(order)
        if self.audit is not None:
            self.audit.record("order.placed", order_id=order.order_id, total=str(order.total))
        return order

    def cancel(self, order_id: str) -> Order:
        order = next(o for o in self.orders if o.order_id == order_id)
        if order.status != "open":
            raise ValueError(f"order {order_id} is already {order.status}")
        for line in order.lines:
            self.products[line.sku].quantity += line.quantity
        order.status = "cancelled"
        return order

    def revenue(self) -> Decimal:
        return sum((o.total for o in self.orders if o.status == "open"), Decimal("0.00"))

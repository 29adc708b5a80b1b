"""Domain records: products, order lines, orders and customers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import List, Optional

from inventory.money import to_money


@dataclass
class Product:
    sku: str
    name: str
    unit_price: Decimal
    quantity: int = 0
    tags: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.unit_price = to_money(self.unit_price)
        if self.quantity < 0:
            raise ValueError(f"{self.sku}: quantity cannot be negative")


@dataclass
class OrderLine:
    sku: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return to_money(self.unit_price * self.quantity)


@dataclass
class Customer:
    customer_id: str
    name: str
    email: Optional[str] = None


@dataclass
class Order:
    order_id: str
    customer_id: str
    lines: list[OrderLine] = field(default_factory=list)
    discount_code: Optional[str] = None
    total: Decimal = Decimal("0.00")
    status: str = "open"

    def is_empty(self) -> bool:
        return len(self.lines) == 0

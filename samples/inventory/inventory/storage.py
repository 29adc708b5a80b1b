"""Persistence — the product catalogue and orders as JSON files, catalogue import from YAML.

Writes go to a temporary file first and are renamed into place, so readers never see a
half-written file.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from inventory.models import Order, OrderLine, Product


def product_to_dict(product: Product) -> dict:
    return {
        "sku": product.sku,
        "name": product.name,
        "unit_price": str(product.unit_price),
        "quantity": product.quantity,
        "tags": list(product.tags),
    }


def product_from_dict(raw: dict) -> Product:
    return Product(
        sku=raw["sku"],
        name=raw["name"],
        unit_price=Decimal(str(raw["unit_price"])),
        quantity=int(raw.get("quantity", 0)),
        tags=list(raw.get("tags", [])),
    )


def order_to_dict(order: Order) -> dict:
    return {
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "lines": [
            {"sku": line.sku, "quantity": line.quantity, "unit_price": str(line.unit_price)}
            for line in order.lines
        ],
        "discount_code": order.discount_code,
        "total": str(order.total),
        "status": order.status,
    }


def order_from_dict(raw: dict) -> Order:
    lines = [
        OrderLine(line["sku"], int(line["quantity"]), Decimal(line["unit_price"]))
        for line in raw["lines"]
    ]
    return Order(
        order_id=raw["order_id"],
        customer_id=raw["customer_id"],
        lines=lines,
        discount_code=raw.get("discount_code"),
        total=Decimal(raw["total"]),
        status=raw.get("status", "open"),
    )


def write_json_atomic(path: Path, payload: object) -> None:
    """Write `payload` as JSON to `path` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mktemp(suffix=".json", dir=path.parent)
    with open(staging, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
    os.replace(staging, path)


class JsonStore:
    """Products and orders kept as two JSON files under `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    @property
    def products_path(self) -> Path:
        return self.data_dir / "products.json"

    @property
    def orders_path(self) -> Path:
        return self.data_dir / "orders.json"

    def load_products(self) -> dict[str, Product]:
        if not self.products_path.exists():
            return {}
        raw = json.loads(self.products_path.read_text(encoding="utf-8"))
        return {item["sku"]: product_from_dict(item) for item in raw}

    def save_products(self, products: dict[str, Product]) -> None:
        write_json_atomic(self.products_path, [product_to_dict(p) for p in products.values()])

    def load_orders(self) -> list[Order]:
        if not self.orders_path.exists():
            return []
        return [order_from_dict(item) for item in json.loads(self.orders_path.read_text())]

    def save_orders(self, orders: list[Order]) -> None:
        write_json_atomic(self.orders_path, [order_to_dict(o) for o in orders])


def load_catalog_yaml(path: Path) -> dict[str, Product]:
    """Import a supplier catalogue: a YAML list of products (needs `pyyaml`)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        items = yaml.load(handle, Loader=yaml.Loader)
    return {item["sku"]: product_from_dict(item) for item in items or []}

"""Reports: stock levels, low-stock alerts and per-customer order summaries."""

from __future__ import annotations

import random
import subprocess
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from inventory import pricing
from inventory.models import Order, Product
from inventory.money import format_money


def low_stock(products: dict[str, Product], threshold: int = 5) -> list[str]:
    return sorted(sku for sku, p in products.items() if p.quantity <= threshold)


def stock_value(products: dict[str, Product]) -> Decimal:
    return sum((p.unit_price * p.quantity for p in products.values()), Decimal("0.00"))


def customer_totals(orders: list[Order], tax_rate: str = "0") -> dict[str, Decimal]:
    # Recomputed from the lines, not order.total: calc_total is the one pricing rule.
    totals: dict[str, Decimal] = defaultdict(lambda: Decimal("0.00"))
    for order in orders:
        if order.status == "open":
            totals[order.customer_id] += pricing.calc_total(order.lines, tax_rate)
    return dict(totals)


def spot_check_sample(products: dict[str, Product], size: int, seed: int) -> list[str]:
    """SKUs for a manual stock count; reproducible from the seed, not a secret."""
    rng = random.Random(seed)
    return sorted(rng.sample(sorted(products), min(size, len(products))))


def render_stock_report(products: dict[str, Product], currency: str = "EUR") -> str:
    lines = [f"{'SKU':<10} {'QTY':>5} {'VALUE':>14}"]
    for sku in sorted(products):
        product = products[sku]
        value = format_money(product.unit_price * product.quantity, currency)
        lines.append(f"{sku:<10} {product.quantity:>5} {value:>14}")
    lines.append(f"total stock value: {format_money(stock_value(products), currency)}")
    return "\n".join(lines) + "\n"


def archive_report(path: Path) -> Path:
    """Compress a written report next to itself and return the archive's path."""
    subprocess.run(f"gzip -kf {path}", shell=True, check=True)
    return path.with_suffix(path.suffix + ".gz")


def describe_totals_source() -> str:
    return "totals come from pricing.calc_total"

"""Command line: `inventory stock`, `inventory quote SKU=QTY ...`, `inventory token USER`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inventory import auth
from inventory.config import Settings, load_settings
from inventory.models import OrderLine
from inventory.pricing import calc_total
from inventory.reports import render_stock_report
from inventory.storage import JsonStore


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inventory")
    parser.add_argument("--config", type=Path, default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("stock", help="print the stock report")
    quote = commands.add_parser("quote", help="price items without ordering (uses calc_total)")
    quote.add_argument("items", nargs="+", metavar="SKU=QTY")
    token = commands.add_parser("token", help="issue an admin API token")
    token.add_argument("user")
    return parser


def parse_items(pairs: list[str]) -> dict[str, int]:
    items: dict[str, int] = {}
    for pair in pairs:
        sku, sep, quantity = pair.partition("=")
        if not sep or not quantity.isdigit():
            raise SystemExit(f"bad item {pair!r}: expected SKU=QTY, e.g. A100=2")
        items[sku] = int(quantity)
    return items


def main(argv: list[str] | None = None, out=sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(args.config) if args.config else Settings()
    store = JsonStore(Path(settings.data_dir))
    products = store.load_products()
    if args.command == "stock":
        if not products:
            out.write(f"no products yet\n")
            return 0
        out.write(render_stock_report(products, settings.currency))
    elif args.command == "quote":
        items = parse_items(args.items)
        missing = [sku for sku in items if sku not in products]
        if missing:
            out.write(f"unknown SKU: {', '.join(missing)}\n")
            return 2
        lines = [OrderLine(sku, qty, products[sku].unit_price) for sku, qty in items.items()]
        out.write(f"{calc_total(lines, settings.tax_rate)} {settings.currency}\n")
    elif args.command == "token":
        out.write(auth.new_session_token() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

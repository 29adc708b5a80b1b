from __future__ import annotations

from decimal import Decimal

import pytest

from inventory.orders import OrderBook
from inventory.storage import JsonStore, load_catalog_yaml


def test_products_and_orders_round_trip(products, tmp_path):
    store = JsonStore(tmp_path / "data")
    book = OrderBook(products)
    book.place_order("CUS-1", {"A100": 4})
    store.save_products(products)
    store.save_orders(book.orders)
    assert store.load_products() == products
    assert store.load_orders() == book.orders
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["orders.json", "products.json"]


def test_missing_files_read_as_empty(tmp_path):
    store = JsonStore(tmp_path / "nowhere")
    assert store.load_products() == {}
    assert store.load_orders() == []


def test_yaml_catalogue_import(tmp_path):
    pytest.importorskip("yaml")
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        "- sku: D400\n  name: Shelf pin\n  unit_price: '0.08'\n  quantity: 1000\n"
        "- sku: E500\n  name: Cabinet handle\n  unit_price: 2.5\n"
    )
    imported = load_catalog_yaml(catalogue)
    assert imported["D400"].unit_price == Decimal("0.08")
    assert imported["E500"].quantity == 0

from __future__ import annotations

import gzip
import io
import json
import shutil
from decimal import Decimal

import pytest

from inventory import cli, pricing
from inventory.config import load_settings
from inventory.orders import OrderBook
from inventory.reports import (
    archive_report,
    customer_totals,
    describe_totals_source,
    low_stock,
    render_stock_report,
    spot_check_sample,
)
from inventory.storage import JsonStore


def test_low_stock_and_report(products):
    assert low_stock(products) == ["C300"]
    report = render_stock_report(products)
    assert "total stock value: 286.30 EUR" in report
    assert report.splitlines()[1].startswith("A100")


def test_customer_totals_match_pricing(products):
    book = OrderBook(products)
    first = book.place_order("CUS-1", {"A100": 2})
    book.place_order("CUS-1", {"B200": 1})
    totals = customer_totals(book.orders, "0.20")
    assert totals == {"CUS-1": pricing.calc_total(first.lines + book.orders[1].lines, "0.20")}
    assert describe_totals_source().endswith("pricing.calc_total")


def test_spot_check_is_reproducible(products):
    assert spot_check_sample(products, 2, seed=7) == spot_check_sample(products, 2, seed=7)
    assert len(spot_check_sample(products, 10, seed=1)) == 3


def test_archive_report(tmp_path):
    if shutil.which("gzip") is None:
        pytest.skip("gzip is not installed")
    report = tmp_path / "stock.txt"
    report.write_text("A100 500\n")
    archive = archive_report(report)
    assert gzip.decompress(archive.read_bytes()) == b"A100 500\n"


def test_settings_from_json_and_yaml(tmp_path):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"currency": "USD", "tax_rate": "0.07", "unknown": 1}))
    settings = load_settings(config)
    assert (settings.currency, settings.tax_rate) == ("USD", "0.07")
    pytest.importorskip("yaml")
    config_yaml = tmp_path / "settings.yaml"
    config_yaml.write_text("currency: GBP\npromotions:\n  TEN: '10'\n")
    assert load_settings(config_yaml).promotions == {"TEN": "10"}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_settings(empty).currency == "EUR"


def test_cli_quote_and_stock(products, tmp_path):
    data = tmp_path / "data"
    JsonStore(data).save_products(products)
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"data_dir": str(data), "tax_rate": "0.20"}))
    out = io.StringIO()
    assert cli.main(["--config", str(config), "quote", "A100=10", "C300=1"], out=out) == 0
    assert out.getvalue() == f"{Decimal('25.20')} EUR\n"
    out = io.StringIO()
    assert cli.main(["--config", str(config), "quote", "Z999=1"], out=out) == 2
    out = io.StringIO()
    cli.main(["--config", str(config), "stock"], out=out)
    assert "C300" in out.getvalue()


def test_cli_stock_without_products(tmp_path):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "empty")}))
    out = io.StringIO()
    assert cli.main(["--config", str(config), "stock"], out=out) == 0
    assert out.getvalue() == "no products yet\n"

"""Supplier API client: asks suppliers for stock levels (needs `requests`)."""

from __future__ import annotations

import json
from typing import Any

from inventory.cache import FileCache


class SupplierClient:
    def __init__(self, base_url: str, cache: FileCache | None = None, timeout_s: float = 5.0):
        self.base_url = base_url.rstrip("/")
        self.cache = cache
        self.timeout_s = timeout_s

    def stock_url(self, sku: str) -> str:
        return f"{self.base_url}/stock/{sku}"

    def fetch_stock(self, sku: str) -> int:
        """The supplier's stock level for `sku`, from the cache when fresh."""
        url = self.stock_url(sku)
        if self.cache is not None:
            cached = self.cache.get(url)
            if cached is not None:
                return int(cached)
        payload = self._get_json(url)
        level = int(payload["available"])
        if self.cache is not None:
            self.cache.put(url, level)
        return level

    def _get_json(self, url: str) -> Any:
        import requests

        response = requests.get(url, timeout=self.timeout_s, verify=False)
        response.raise_for_status()
        return json.loads(response.text)

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inventory.cache import FileCache
from inventory.http_client import SupplierClient


def test_cache_expires_after_ttl(tmp_path):
    cache = FileCache(tmp_path / "cache", ttl_s=10)
    cache.put("k", {"available": 3}, now=100.0)
    assert cache.get("k", now=105.0) == {"available": 3}
    assert cache.get("k", now=111.0) is None
    assert cache.get("never-set") is None


class _Supplier(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).hits += 1
        body = json.dumps({"available": 42 if self.path.endswith("/A100") else 0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_supplier_stock_is_fetched_once_then_cached(tmp_path):
    pytest.importorskip("requests")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Supplier)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/api"
        client = SupplierClient(base, cache=FileCache(tmp_path / "c"))
        assert client.fetch_stock("A100") == 42
        assert client.fetch_stock("A100") == 42
        assert _Supplier.hits == 1
    finally:
        server.shutdown()
        server.server_close()

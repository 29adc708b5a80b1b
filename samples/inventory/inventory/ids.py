"""Identifiers for orders and customers: short, sortable by creation, never reused."""

from __future__ import annotations

import itertools
import time
import uuid

_counter = itertools.count(1)


def new_order_id(now: float | None = None) -> str:
    stamp = int((time.time() if now is None else now) * 1000)
    return f"ORD-{stamp:013d}-{next(_counter):04d}"


def new_customer_id() -> str:
    return f"CUS-{uuid.uuid4().hex[:12]}"

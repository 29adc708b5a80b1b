from __future__ import annotations

from decimal import Decimal

import pytest

from inventory.models import Product


@pytest.fixture
def products() -> dict[str, Product]:
    return {
        "A100": Product("A100", "Hex bolt M6", Decimal("0.35"), 500, ["fasteners"]),
        "B200": Product("B200", "Hinge, steel", Decimal("4.90"), 12),
        "C300": Product("C300", "Drawer rail 450mm", Decimal("17.50"), 3),
    }

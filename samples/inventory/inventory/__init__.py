"""Inventory and orders service: products, stock, orders, pricing and reports."""

__version__ = "0.3.0"

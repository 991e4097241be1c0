"""Test factories live in the demo app so ``seed_demo`` can share them."""

from __future__ import annotations

from testproject.shop.factories import OrderFactory, ProductFactory, UserFactory

__all__ = ["OrderFactory", "ProductFactory", "UserFactory"]

"""Order placement, shared by the HTML form and the JSON API."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F

from .models import Order, Product

logger = logging.getLogger("testproject.shop")


class OutOfStockError(Exception):
    pass


def place_order(product: Product, quantity: int, email: str) -> Order:
    """Reserve stock and create the order on the primary, then queue the confirmation."""
    with transaction.atomic():
        # A conditional UPDATE: no read-modify-write race, and an update() that post_save
        # never sees, which the router's read-your-writes tracking must still notice.
        reserved = Product.objects.filter(pk=product.pk, stock__gte=quantity).update(
            stock=F("stock") - quantity
        )
        if not reserved:
            raise OutOfStockError(product.slug)
        order = Order.objects.create(product=product, quantity=quantity, email=email)
        # After commit, so the worker can find the row. robust=True: the order is committed
        # by then, and a broker hiccup must not turn it into a 500 for the customer. A
        # function, not a partial: Django logs a robust callback's failure by its
        # __qualname__, which a partial lacks (the log call itself would raise).
        pk = order.pk

        def confirm() -> None:
            enqueue_confirmation(pk)

        transaction.on_commit(confirm, robust=True)
    return order


def enqueue_confirmation(order_id: int) -> None:
    from .tasks import send_order_confirmation

    send_order_confirmation.delay(order_id)
    logger.info("queued confirmation for order %s", order_id)

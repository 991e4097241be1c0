from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from .models import Order

logger = logging.getLogger("testproject.shop")


@shared_task(name="shop.tasks.send_order_confirmation")
def send_order_confirmation(order_id: int) -> dict[str, Any]:
    """Pretend to e-mail the customer. Runs right after the order's commit, the classic case
    of a task reading its own write: without django-pgreplica's task read-your-writes a
    lagging replica answers "no such order"."""
    try:
        order = Order.objects.select_related("product").get(pk=order_id)
    except Order.DoesNotExist:
        logger.warning("order %s not found (stale replica read?)", order_id)
        return {"order_id": order_id, "status": "not_found", "database": None}
    logger.info("confirmation for order %s sent to %s", order.pk, order.email)
    return {
        "order_id": order.pk,
        "status": "sent",
        "email": order.email,
        "product": order.product.slug,
        "database": order._state.db,
    }

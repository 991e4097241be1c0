"""Demo views. Each page shows which database alias served its reads (``obj._state.db``),
so routing is visible: product pages come from a replica, the order page right after
placing an order from the primary (or from a replica that has replayed the order)."""

from __future__ import annotations

import json
import os
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.db import connections
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .forms import OrderForm
from .models import Order, Product
from .services import OutOfStockError, place_order


def product_json(product: Product) -> dict[str, Any]:
    return {
        "id": product.pk,
        "name": product.name,
        "slug": product.slug,
        "description": product.description,
        "price": str(product.price),
        "stock": product.stock,
        "database": product._state.db,
    }


def order_json(order: Order) -> dict[str, Any]:
    return {
        "id": order.pk,
        "product": order.product.slug,
        "quantity": order.quantity,
        "email": order.email,
        "total": str(order.product.price * order.quantity),
        "created_at": order.created_at.isoformat(),
        "url": order.get_absolute_url(),
        "database": order._state.db,
    }


@require_GET
def product_list(request: HttpRequest) -> HttpResponse:
    products = list(Product.objects.all())
    database = products[0]._state.db if products else Product.objects.all().db
    return render(request, "shop/product_list.html", {"products": products, "database": database})


@require_http_methods(["GET", "POST"])
def product_detail(request: HttpRequest, slug: str) -> HttpResponse:
    product = get_object_or_404(Product, slug=slug)
    database = product._state.db
    if request.method == "POST":
        form = OrderForm(request.POST)
        if form.is_valid():
            try:
                order = place_order(
                    product, form.cleaned_data["quantity"], form.cleaned_data["email"]
                )
            except OutOfStockError:
                form.add_error("quantity", "Not enough stock left.")
            else:
                messages.success(request, f"Order #{order.pk} placed.")
                # The read-after-write case: the next request must find this order.
                return redirect(order)
    else:
        form = OrderForm()
    return render(
        request,
        "shop/product_detail.html",
        {"product": product, "form": form, "database": database},
    )


@require_GET
def order_detail(request: HttpRequest, pk: int) -> HttpResponse:
    # Deliberately a plain 404 when the row is missing: a stale replica read shows up as a
    # "not found" right after placing the order instead of being papered over.
    order = get_object_or_404(Order.objects.select_related("product"), pk=pk)
    return render(request, "shop/order_detail.html", {"order": order, "database": order._state.db})


async def api_product(request: HttpRequest, slug: str) -> HttpResponse:
    """Async read through the async ORM; routing works the same as in sync views."""
    if request.method != "GET":  # require_GET only wraps async views from Django 5.0 on
        return HttpResponseNotAllowed(["GET"])
    try:
        product = await Product.objects.aget(slug=slug)
    except Product.DoesNotExist:
        return JsonResponse({"error": "product not found"}, status=404)
    return JsonResponse(product_json(product))


def _payload(request: HttpRequest) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return request.POST.dict()


def _order_response(product: Product, data: dict[str, Any]) -> JsonResponse:
    """Validate ``data`` and order ``product``: 201 with the order, else 400 or 409."""
    form = OrderForm({"quantity": data.get("quantity", 1), "email": data.get("email", "")})
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    try:
        order = place_order(product, form.cleaned_data["quantity"], form.cleaned_data["email"])
    except OutOfStockError:
        return JsonResponse({"errors": {"quantity": ["Not enough stock left."]}}, status=409)
    return JsonResponse(order_json(order), status=201)


@csrf_exempt  # API clients send JSON without a CSRF cookie
@require_POST
def api_orders(request: HttpRequest) -> JsonResponse:
    """Create an order: ``{"product": "<slug>", "quantity": 1, "email": "a@b.c"}``."""
    data = _payload(request)
    product = Product.objects.filter(slug=str(data.get("product", ""))).first()
    if product is None:
        return JsonResponse({"errors": {"product": ["Unknown product."]}}, status=400)
    return _order_response(product, data)


@csrf_exempt
@require_POST
async def api_product_orders(request: HttpRequest, slug: str) -> JsonResponse:
    """Order a product from async code: ``{"quantity": 1, "email": "a@b.c"}``. The order's
    transaction runs in a thread (``sync_to_async``): the async ORM has no transactions."""
    product = await Product.objects.filter(slug=slug).afirst()
    if product is None:
        return JsonResponse({"error": "product not found"}, status=404)
    return await sync_to_async(_order_response)(product, _payload(request))


@require_GET
def api_order(request: HttpRequest, pk: int) -> JsonResponse:
    order = Order.objects.select_related("product").filter(pk=pk).first()
    if order is None:
        return JsonResponse({"error": "order not found"}, status=404)
    return JsonResponse(order_json(order))


@require_GET
def whoami_db(request: HttpRequest) -> JsonResponse:
    """Which alias the router picks for a fresh read, and what the server that answered it
    says it is. One routed query asks both, so a read the router reruns elsewhere (its
    replica died mid-query) reports the server that really answered; a second query on
    ``connections[alias]`` would reconnect to the dead replica outside the router (a 500)."""
    config = getattr(settings, "PGREPLICA", {})
    qs = Product.objects.annotate(
        in_recovery=RawSQL("pg_is_in_recovery()", ()),
        server_port=RawSQL("inet_server_port()", ()),
    )[:1]
    database = qs.db  # QuerySet.db asks the router's db_for_read
    first = next(iter(qs), None)
    if first is not None:
        database = first._state.db or database
        in_recovery, server_port = first.in_recovery, first.server_port
    else:  # no product yet: ask the server directly
        with connections[database].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery(), inet_server_port()")
            in_recovery, server_port = cursor.fetchone()
    return JsonResponse(
        {
            "database": database,
            "in_recovery": in_recovery,
            "server_port": server_port,
            "primary": config.get("PRIMARY", "default"),
            "replicas": list(config.get("REPLICAS") or []),
            "sample_product": first.slug if first else None,
            "worker_pid": os.getpid(),  # which process of a multi-worker server answered
        }
    )

"""A view that writes, then reads while its body streams (for the middleware tests)."""

from __future__ import annotations

from collections.abc import Iterator

from django.http import HttpRequest, StreamingHttpResponse
from django.urls import path

from testproject.shop.models import Product


def write_then_stream(request: HttpRequest) -> StreamingHttpResponse:
    Product.objects.filter(slug="lamp").update(stock=1)

    def body() -> Iterator[str]:
        yield "start "
        yield Product.objects.all().db  # routed after the view returned

    return StreamingHttpResponse(body())


urlpatterns = [path("stream/", write_then_stream)]

"""The demo shop's URLs plus one view that runs no query (pure middleware + handler cost)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def noop(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [
    path("bench/noop/", noop),
    path("", include("testproject.urls")),
]

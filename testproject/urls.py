from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("", include("testproject.shop.urls")),
]
# /metrics for Prometheus (django-prometheus plus django_pgreplica's collector), here only
# when no export port serves it (testproject/settings.py): then the site's port has none.
if not (
    getattr(settings, "PROMETHEUS_METRICS_EXPORT_PORT", None)
    or getattr(settings, "PROMETHEUS_METRICS_EXPORT_PORT_RANGE", None)
):
    urlpatterns.insert(1, path("", include("django_prometheus.urls")))

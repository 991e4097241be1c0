"""The admin's replication status page: a live :func:`check_replication` report plus the
lag history stored by the ``monitor_replication`` task, drawn as inline SVG.

Added to an :class:`~django.contrib.admin.AdminSite` by :func:`django_pgreplica.admin.register`
(see :mod:`.site`), which wraps :func:`replication_view` in ``site.admin_view`` (login and
staff checks); the view itself requires :data:`PERMISSION`. The context comes from
:mod:`.panel` (the report), :mod:`.history` (the charts) and :mod:`.params` (the query).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse

from ..monitoring import Report, check_replication
from .history import build_history
from .panel import report_context
from .params import page_links, parse_hours, parse_refresh

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite

PERMISSION = "django_pgreplica.view_replicationsample"
TEMPLATE = "admin/django_pgreplica/replication.html"


def _reverse(name: str, site: AdminSite, **kwargs: str) -> str | None:
    try:
        return reverse(name, kwargs=kwargs or None, current_app=site.name)
    except NoReverseMatch:  # the sample ModelAdmin is not registered on this site
        return None


def page_context(report: Report, request: HttpRequest, site: AdminSite) -> dict[str, Any]:
    hours = parse_hours(request.GET)
    refresh = parse_refresh(request.GET)
    return {
        **report_context(report),
        "history": build_history(hours, report.checked_at, [r.alias for r in report.replicas]),
        "refresh": refresh,
        "links": page_links(request.path, hours, refresh),
        "samples_url": _reverse("admin:django_pgreplica_replicationsample_changelist", site),
        "app_url": _reverse("admin:app_list", site, app_label="django_pgreplica"),
    }


def replication_view(request: HttpRequest, site: AdminSite) -> TemplateResponse:
    """The page. ``site.admin_view`` has already let only active staff in."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    report = check_replication(with_routing=True)  # never raises for a server that is down
    request.current_app = site.name
    context = {
        **site.each_context(request),
        "title": "Replication status",
        "subtitle": None,
        **page_context(report, request, site),
    }
    return TemplateResponse(request, TEMPLATE, context)

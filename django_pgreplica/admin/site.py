"""How :func:`register` adds the replication page to one :class:`AdminSite` instance.

- the page at ``<admin root>/replication/``, URL name ``admin:pgreplica_replication``,
  by wrapping the instance's ``get_urls``. It goes before the site's own patterns, so it
  is reached even though ``<app_label>/`` and the catch-all follow;
- a "Replication status" entry, first in the "Replication" app (label ``django_pgreplica``)
  of the index, the app index and the nav sidebar, by wrapping the instance's
  ``get_app_list``. Only users who may open the page see it;
- a read-only :class:`.ReplicationSampleAdmin` (unless that model is registered already).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse

from ..models import ReplicationSample
from .sample_admin import ReplicationSampleAdmin
from .views import PERMISSION, replication_view

URL_NAME = "pgreplica_replication"
APP_LABEL = ReplicationSample._meta.app_label
ENTRY_NAME = "Replication status"
_MARK = "_pgreplica_registered"


def status_url(site: admin.AdminSite) -> str:
    return reverse(f"admin:{URL_NAME}", current_app=site.name)


def _entry(site: admin.AdminSite) -> dict[str, Any]:
    """A model-like row for the admin's app list templates."""
    return {
        "model": ReplicationSample,
        "name": ENTRY_NAME,
        "object_name": "ReplicationStatus",  # CSS class "model-replicationstatus"
        "perms": {"add": False, "change": False, "delete": False, "view": True},
        "admin_url": status_url(site),
        "add_url": None,
        "view_only": True,
    }


def with_status_entry(
    site: admin.AdminSite,
    request: HttpRequest,
    app_list: list[Any],
    app_label: str | None,
) -> list[Any]:
    """``app_list`` with the page's entry added for users who may open the page."""
    if app_label not in (None, APP_LABEL) or not request.user.has_perm(PERMISSION):
        return app_list
    app = next((item for item in app_list if item.get("app_label") == APP_LABEL), None)
    if app is not None:
        app["models"].insert(0, _entry(site))
        return app_list
    if app_label is not None:
        return app_list  # app index of an app this site does not serve: leave the 404
    # The sample admin was unregistered: the app gets a section of its own.
    from django.apps import apps

    url = status_url(site)
    app = {
        "name": apps.get_app_config(APP_LABEL).verbose_name,
        "app_label": APP_LABEL,
        "app_url": url,
        "has_module_perms": True,
        "models": [_entry(site)],
    }
    return sorted([*app_list, app], key=lambda item: str(item["name"]).lower())


def register(site: admin.AdminSite) -> None:
    """Add the replication page, its index entry and the sample admin to ``site``.

    Idempotent. Call it before the site's ``urls`` are read (URLconf import).
    """
    if getattr(site, _MARK, False):
        return
    if not site.is_registered(ReplicationSample):
        site.register(ReplicationSample, ReplicationSampleAdmin)
    site_urls = site.get_urls
    site_app_list = site.get_app_list

    def view(request: HttpRequest) -> TemplateResponse:
        return replication_view(request, site)

    def get_urls() -> list[URLPattern | URLResolver]:
        page = path("replication/", site.admin_view(view), name=URL_NAME)
        return [page, *site_urls()]

    def get_app_list(request: HttpRequest, app_label: str | None = None) -> list[Any]:
        return with_status_entry(site, request, site_app_list(request, app_label), app_label)

    # Why wrap the instance: AdminSite has no hook for extra URLs or index entries, and
    # adding the app to INSTALLED_APPS must be all it takes, so neither a base class to
    # inherit nor a proxy model (and its migration). Instance attributes shadow the class's
    # methods for this site only, on admin.site and any AdminSite subclass alike; AdminSite
    # calls them through self (urls, index, app_index, each_context), so all of it follows.
    for name, value in (("get_urls", get_urls), ("get_app_list", get_app_list), (_MARK, True)):
        setattr(site, name, value)

"""Django admin integration: the replication status page and the stored lag samples.

:func:`register` adds to an :class:`~django.contrib.admin.AdminSite` the page at
``<admin root>/replication/`` (URL name ``admin:pgreplica_replication``; for a site with
its own name, ``reverse(..., current_app=site.name)`` or :func:`status_url`), its
"Replication status" entry in the index, and a read-only :class:`ReplicationSampleAdmin`.
The admin's autodiscovery imports this module, which registers ``django.contrib.admin.site``
(below). For your own site, call it where the site is created, before its ``urls`` are
first used::

    ops_site = OpsAdminSite(name="ops")
    django_pgreplica.admin.register(ops_site)   # -> /ops/replication/

Access: ``site.admin_view`` sends anonymous and non-staff users to the admin login; staff
without ``django_pgreplica.view_replicationsample`` (:data:`PERMISSION`) get 403
(superusers have it).

Modules: :mod:`.site` (register), :mod:`.views` (the page), :mod:`.panel` (report ->
rows), :mod:`.history` (stored samples -> charts), :mod:`.params` (query parameters),
:mod:`.charts` (SVG), :mod:`.sample_admin` (the samples' ModelAdmin).
"""

from __future__ import annotations

from django.contrib import admin

from .sample_admin import ReplicationSampleAdmin
from .site import URL_NAME, register, status_url
from .views import PERMISSION

__all__ = ["PERMISSION", "URL_NAME", "ReplicationSampleAdmin", "register", "status_url"]

register(admin.site)

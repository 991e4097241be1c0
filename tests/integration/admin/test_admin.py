"""The admin's replication page against the real primary and its two streaming replicas.

This module is also a URLconf (``urlpatterns`` below) for the custom ``AdminSite`` tests.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client, override_settings
from django.urls import path, reverse
from django.utils import timezone

from django_pgreplica.admin import ReplicationSampleAdmin, register
from django_pgreplica.models import ReplicationSample
from django_pgreplica.routing import stats
from django_pgreplica.testing.cluster import Cluster
from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from tests.monitoring_support import primary_unreachable, write_rows

DB = pytest.mark.django_db(transaction=True, databases="__all__")
PAGE = "/admin/replication/"


class OpsAdminSite(AdminSite):
    site_header = "Ops console"
    site_title = "Ops"
    index_title = "Operations"


ops_site = OpsAdminSite(name="ops")
register(ops_site)
register(ops_site)  # idempotent: still one page, one index entry

bare_site = AdminSite(name="bare")
register(bare_site)
bare_site.unregister(ReplicationSample)  # the page must stand on its own

urlpatterns = [path("ops/", ops_site.urls), path("bare/", bare_site.urls)]
CUSTOM_URLS = override_settings(ROOT_URLCONF=__name__)


# --- helpers -------------------------------------------------------------------------------


def make_user(username: str, *, staff: bool = True, superuser: bool = False,
              can_view: bool = False) -> User:  # fmt: skip
    user = User.objects.create_user(username, password="pw", is_staff=staff)
    if superuser:
        user.is_superuser = True
        user.save()
    if can_view:
        user.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="django_pgreplica", codename="view_replicationsample"
            )
        )
    return user


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    wait_for_replay()  # the session and the user are read from a replica
    return client


@pytest.fixture
def admin_client_(db: Any) -> Client:
    return logged_in(make_user("root", superuser=True))


def row(html: str, alias: str) -> str:
    """The replica's table row (not its reasons row)."""
    match = re.search(
        rf'<tr class="pgr-replica[^"]*" data-replica="{re.escape(alias)}">(.*?)</tr>', html, re.S
    )
    assert match, f"no row for {alias}"
    return match.group(1)


def reasons(html: str, alias: str) -> str:
    match = re.search(
        rf'<tr class="pgr-reasons" data-replica="{re.escape(alias)}">(.*?)</tr>', html, re.S
    )
    return match.group(1) if match else ""


def badge(fragment: str) -> str:
    match = re.search(r'<span class="pgr-badge pgr-(\w+)">([^<]*)</span>', fragment)
    assert match
    return match.group(2)


def overall(html: str) -> str:
    match = re.search(r'id="pgr-overall"[^>]*>([^<]*)<', html)
    assert match
    return match.group(1)


def page(client: Client, url: str = PAGE) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


# --- access --------------------------------------------------------------------------------


@DB
def test_anonymous_is_sent_to_the_admin_login() -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={PAGE}"


@DB
def test_non_staff_is_sent_to_the_admin_login() -> None:
    response = logged_in(make_user("shopper", staff=False, can_view=True)).get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@DB
def test_staff_without_the_permission_gets_403_and_no_details() -> None:
    client = logged_in(make_user("clerk"))
    response = client.get(PAGE)
    assert response.status_code == 403
    body = response.content.decode()
    assert "replica2" not in body and "streaming" not in body
    assert "Replication status" not in page(client, "/admin/")


@DB
def test_staff_with_the_permission_sees_the_page_and_the_entry() -> None:
    client = logged_in(make_user("operator", can_view=True))
    html = page(client)
    assert "<h1>Replication status</h1>" in html
    index = page(client, "/admin/")
    assert f'<a href="{PAGE}">Replication status</a>' in index


@DB
def test_superuser_sees_the_page(admin_client_: Client) -> None:
    assert "Replication status" in page(admin_client_)


@DB
def test_the_page_says_where_reads_went_and_how_many_waited_for_a_token(
    admin_client_: Client,
) -> None:
    stats.count_read("default", stats.REASON_TOKEN_WAIT)
    stats.count_replay_wait(0.004, replayed=True)
    html = page(admin_client_)
    assert 'id="pgr-routing"' in html and "this process only" in html
    waited = stats.snapshot().by_reason()[stats.REASON_TOKEN_WAIT]
    assert f'<strong id="pgr-token-wait">{waited}</strong>' in html
    assert re.search(r"\d+ \(\d+ replayed[^)]*\), mean", html)


# --- admin integration -------------------------------------------------------------------


@DB
def test_index_app_index_and_sidebar_list_the_page(admin_client_: Client) -> None:
    assert reverse("admin:pgreplica_replication") == PAGE
    index = page(admin_client_, "/admin/")
    section = re.search(r'<div class="app-django_pgreplica module.*?</table>', index, re.S)
    assert section, "no Replication app on the index"
    assert '<a href="/admin/django_pgreplica/" class="section"' in section.group(0)
    # The page first, then the samples' changelist.
    links = re.findall(r'<th scope="row"[^>]*>\s*<a href="([^"]+)"', section.group(0))
    assert links == [PAGE, "/admin/django_pgreplica/replicationsample/"]
    assert f'href="{PAGE}"' in page(admin_client_, "/admin/django_pgreplica/")
    html = page(admin_client_)
    assert 'id="nav-sidebar"' in html and 'aria-current="page">Replication status' in html
    breadcrumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', html, re.S)
    assert breadcrumbs and 'href="/admin/django_pgreplica/">Replication</a>' in breadcrumbs[1]
    # One entry (its name and its "View" link), however often the app list was built.
    assert page(admin_client_, "/admin/").count(f'href="{PAGE}"') == 2


@DB
@CUSTOM_URLS
def test_a_custom_admin_site_gets_the_page_at_its_own_root(admin_client_: Client) -> None:
    assert reverse("admin:pgreplica_replication", current_app="ops") == "/ops/replication/"
    html = page(admin_client_, "/ops/replication/")
    assert "Ops console" in html
    assert '<a href="/ops/">Home</a>' in html
    assert 'href="/ops/django_pgreplica/">Replication</a>' in html
    assert 'data-replica="replica2"' in html
    index = page(admin_client_, "/ops/")
    assert index.count('<a href="/ops/replication/">Replication status</a>') == 1
    assert Client().get("/ops/replication/")["Location"] == "/ops/login/?next=/ops/replication/"


@DB
@CUSTOM_URLS
def test_a_site_without_the_sample_admin_still_lists_the_page(admin_client_: Client) -> None:
    index = page(admin_client_, "/bare/")
    section = re.search(r'<div class="app-django_pgreplica module.*?</table>', index, re.S)
    assert section and '<a href="/bare/replication/">Replication status</a>' in section[0]
    html = page(admin_client_, "/bare/replication/")
    assert "Replication status" in html and "browse them" not in html
    assert logged_in(make_user("clerk")).get("/bare/replication/").status_code == 403


@DB
def test_sample_changelist_lists_samples_read_only(admin_client_: Client) -> None:
    ReplicationSample.objects.create(
        taken_at=timezone.now(), replica="replica2", status=2, reachable=False,
        message="unreachable: connection refused",
    )  # fmt: skip
    wait_for_replay()
    html = page(admin_client_, "/admin/django_pgreplica/replicationsample/")
    assert "unreachable: connection refused" in html and "CRITICAL" in html
    assert admin_client_.get("/admin/django_pgreplica/replicationsample/add/").status_code == 403


def test_sample_admin_is_read_only() -> None:
    model_admin = ReplicationSampleAdmin(ReplicationSample, AdminSite())
    request: Any = None
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)


# --- content against the real cluster ------------------------------------------------------


@DB
def test_healthy_cluster(admin_client_: Client) -> None:
    wait_for_replay()
    html = page(admin_client_)
    assert overall(html) == "OK"
    for alias, slot in (("replica", "replica1"), ("replica2", "replica2")):
        cells = row(html, alias)
        assert badge(cells) == "healthy"
        assert ">streaming<" in cells and ">async<" in cells
        assert ">closed<" in cells and ">yes<" in cells
        assert f"<td>{slot}</td>" in cells
        assert reasons(html, alias) == ""
        assert re.search(rf'data-slot="{slot}">.*?reserved', html, re.S)
    assert "W104" in html  # the local cluster's laptop-sized WAL retention
    assert 'id="pgreplica-lag-seconds"' in html and 'id="pgreplica-lag-bytes"' in html
    assert "errornote" not in html


@DB
def test_lagging_replica_warns_with_byte_lag(admin_client_: Client) -> None:
    wait_for_replay()
    strict = {**settings.PGREPLICA, "LAG_WARNING_SECONDS": 0.1, "LAG_CRITICAL_SECONDS": 3600}
    with override_settings(PGREPLICA=strict), replay_paused("replica"):
        write_rows(5, prefix="lagging")
        # The lag shown is the primary's replay_lag as of the standby's last reply (plus
        # its age): past one wal_receiver_status_interval (1 s) it extrapolates the stall.
        time.sleep(1.3)
        html = page(admin_client_)
    cells = row(html, "replica")
    assert badge(cells) == "warning"
    assert "streaming, replay paused" in cells
    lag_bytes = re.findall(r'<td class="pgr-num">([^<]*)</td>', cells)[4]
    assert lag_bytes not in ("-", "0 B")
    why = reasons(html, "replica")
    assert "WAL replay is paused" in why and "replay lag" in why
    assert badge(row(html, "replica2")) == "healthy"
    assert overall(html) == "WARNING"
    assert "warning &gt; 100ms, critical &gt; 1h" in html


@pytest.fixture
def replica1_stopped(pgreplica_cluster: Cluster) -> Iterator[None]:
    pgreplica_cluster.stop("replica1")
    try:
        yield
    finally:
        pgreplica_cluster.start("replica1")
        for alias in connections:
            connections[alias].close()
        wait_for_replay(timeout=30)


@DB
def test_replica_down_shows_down_and_the_page_renders(
    admin_client_: Client, replica1_stopped: None
) -> None:
    html = page(admin_client_)
    cells = row(html, "replica")
    assert badge(cells) == "critical"
    assert '<span class="pgr-down">down</span>' in cells
    assert "unreachable: " in reasons(html, "replica")
    assert re.search(r"refused|failed|could not connect", reasons(html, "replica"), re.I)
    assert badge(row(html, "replica2")) == "healthy"
    slot = re.search(r'data-slot="replica1">(.*?)</tr>', html, re.S)
    assert slot and '<span class="pgr-down">no</span>' in slot[1]  # inactive slot
    assert overall(html) == "CRITICAL"


@DB
def test_unreachable_primary_renders_unknown(admin_client_: Client) -> None:
    with primary_unreachable():
        html = page(admin_client_)
    assert overall(html) == "UNKNOWN"
    assert re.search(r'class="errornote pgr-message">UNKNOWN: primary default unreachable', html)
    assert "Unknown: the primary did not answer." in html
    assert 'data-replica="replica2"' in html


# --- history chart -------------------------------------------------------------------------


@DB
def test_history_chart_from_stored_samples(admin_client_: Client) -> None:
    now = timezone.now()
    samples = [
        ReplicationSample(taken_at=now - timedelta(minutes=minutes), replica=alias, status=0,
                          lag_seconds=lag, lag_bytes=int(lag * 4096), state="streaming")
        for minutes, lag in ((170, 0.5), (120, 2.0), (90, 7.5), (30, 1.0), (5, 0.0))
        for alias in ("replica", "replica2")
    ]  # fmt: skip
    samples.append(
        ReplicationSample(
            taken_at=now - timedelta(minutes=60), replica="replica2", status=2, reachable=False
        )
    )
    ReplicationSample.objects.bulk_create(samples)
    wait_for_replay()

    html = page(admin_client_, f"{PAGE}?hours=6")
    chart = re.search(r'<svg[^>]*id="pgreplica-lag-seconds".*?</svg>', html, re.S)
    assert chart
    svg = chart.group(0)
    assert svg.count('<g class="series"') == 2
    assert 'data-series="replica"' in svg and 'data-series="replica2"' in svg
    assert svg.count("<polyline") >= 2
    assert '<rect class="down"' in svg  # replica2's outage
    assert "threshold-warning" in svg  # the 5 s warning line is in range (max lag 7.5 s)
    assert "11 samples" in html

    recent = page(admin_client_, f"{PAGE}?hours=1")
    assert "Lag history, last 1 h" in recent
    assert "4 samples" in recent  # 30 and 5 minutes ago, two replicas


@DB
def test_auto_refresh_toggle(admin_client_: Client) -> None:
    off = page(admin_client_)
    assert 'http-equiv="refresh"' not in off
    assert f'<a href="{PAGE}?hours=6&amp;refresh=10">turn on</a>' in off
    on = page(admin_client_, f"{PAGE}?refresh=30&hours=24")
    assert '<meta http-equiv="refresh" content="30">' in on
    assert f'<a href="{PAGE}?hours=24">turn off</a>' in on
    assert 'http-equiv="refresh"' not in page(admin_client_, f"{PAGE}?refresh=0")

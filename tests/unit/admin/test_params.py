"""The admin page's query parameters and toggle links. No database."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from django_pgreplica.admin.params import page_links, parse_hours, parse_refresh

PAGE = "/admin/replication/"


@pytest.mark.parametrize(
    ("query", "hours", "refresh"),
    [("", 6, None), ("hours=24&refresh=10", 24, 10), ("hours=5&refresh=1", 6, None),
     ("hours=x&refresh=y", 6, None), ("refresh=4", 6, None), ("refresh=3600", 6, 3600),
     ("refresh=3601", 6, None)],
)  # fmt: skip
def test_query_parameters(query: str, hours: int, refresh: int | None) -> None:
    params = QueryDict(query)
    assert (parse_hours(params), parse_refresh(params)) == (hours, refresh)


def test_links_without_refresh() -> None:
    links = page_links(PAGE, 6, None)
    assert links.refresh_on == f"{PAGE}?hours=6&refresh=10"
    assert links.refresh_off == f"{PAGE}?hours=6"
    assert links.hours == [
        (1, f"{PAGE}?hours=1", False),
        (6, f"{PAGE}?hours=6", True),
        (24, f"{PAGE}?hours=24", False),
    ]


def test_links_keep_the_refresh_rate() -> None:
    links = page_links(PAGE, 24, 30)
    assert links.refresh_on == f"{PAGE}?hours=24&refresh=30"
    assert links.refresh_off == f"{PAGE}?hours=24"
    assert [url for _, url, _ in links.hours] == [
        f"{PAGE}?hours=1&refresh=30",
        f"{PAGE}?hours=6&refresh=30",
        f"{PAGE}?hours=24&refresh=30",
    ]
    assert [current for _, _, current in links.hours] == [False, False, True]

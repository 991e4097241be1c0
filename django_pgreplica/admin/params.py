"""The replication page's query parameters and the links of its toggles.

``hours``: the history window, one of :data:`HOURS_CHOICES` (else :data:`DEFAULT_HOURS`).
``refresh``: seconds between automatic reloads, :data:`MIN_REFRESH`..:data:`MAX_REFRESH`
(anything else: no reload). Links keep the other parameter as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.http import QueryDict

HOURS_CHOICES = (1, 6, 24)
DEFAULT_HOURS = 6
DEFAULT_REFRESH = 10
MIN_REFRESH, MAX_REFRESH = 5, 3600  # each load probes every server: not too often


@dataclass
class Links:
    """URLs of the page's own toggles, keeping the other parameters."""

    refresh_on: str
    refresh_off: str
    hours: list[tuple[int, str, bool]] = field(default_factory=list)


def parse_hours(params: QueryDict) -> int:
    try:
        hours = int(params.get("hours", DEFAULT_HOURS))
    except ValueError:
        return DEFAULT_HOURS
    return hours if hours in HOURS_CHOICES else DEFAULT_HOURS


def parse_refresh(params: QueryDict) -> int | None:
    """Seconds between reloads, or None (off, or not a sensible number)."""
    try:
        refresh = int(params.get("refresh", ""))
    except ValueError:
        return None
    return refresh if MIN_REFRESH <= refresh <= MAX_REFRESH else None


def page_links(path: str, hours: int, refresh: int | None) -> Links:
    def url(**params: int | None) -> str:
        query = {key: value for key, value in params.items() if value is not None}
        return f"{path}?{urlencode(query)}" if query else path

    return Links(
        refresh_on=url(hours=hours, refresh=refresh or DEFAULT_REFRESH),
        refresh_off=url(hours=hours),
        hours=[
            (choice, url(hours=choice, refresh=refresh), choice == hours)
            for choice in HOURS_CHOICES
        ],
    )

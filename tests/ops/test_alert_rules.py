"""ops/: the Prometheus alert rules pass promtool, and rules and dashboard use real series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.core import CounterMetricFamily

from django_pgreplica.contrib.prometheus import _Families

OPS = Path(__file__).resolve().parents[2] / "ops"
RULES = OPS / "prometheus" / "alerts.yml"
RULE_TESTS = OPS / "prometheus" / "alerts_test.yml"
DASHBOARD = OPS / "grafana" / "dashboards" / "pgreplica.json"
SERIES = re.compile(r"\bdjango_pgreplica_[a-z_]+")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Prometheus's tools (Debian/Ubuntu: "
            "apt-get install prometheus; or the prometheus release tarball) and retry",
            pytrace=False,
        )
    return path


def exported_series() -> set[str]:
    names = set()
    for family in _Families().all():
        suffix = "_total" if isinstance(family, CounterMetricFamily) else ""
        names.add(family.name + suffix)
    return names


def test_promtool_accepts_the_rules(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_the_compose_prometheus_config_loads_the_rules(promtool: str) -> None:
    config = OPS / "prometheus" / "prometheus.yml"
    done = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 rules found" in done.stdout + done.stderr


def test_rules_fire_as_their_unit_tests_expect(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_and_tests_only_use_series_the_collector_exports() -> None:
    exported = exported_series()
    for path in (RULES, RULE_TESTS, DASHBOARD):
        used = set(SERIES.findall(path.read_text()))
        assert used, path
        assert used <= exported, (path.name, sorted(used - exported))


def test_the_lag_setting_defaults_are_the_rules_thresholds() -> None:
    from django_pgreplica.conf import DEFAULTS

    text = RULES.read_text()
    assert f"django_pgreplica_replica_lag_seconds) > {DEFAULTS['LAG_WARNING_SECONDS']:g}" in text
    assert f"django_pgreplica_replica_lag_seconds) > {DEFAULTS['LAG_CRITICAL_SECONDS']:g}" in text
    assert DEFAULTS["LAG_CRITICAL_BYTES"] == 100 * 1024 * 1024
    assert "django_pgreplica_replica_lag_bytes) > 100 * 1024 * 1024" in text


def test_grafana_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    for series in (
        "django_pgreplica_replica_lag_seconds",
        "django_pgreplica_replica_lag_bytes",
        "django_pgreplica_circuit_state",
        "django_pgreplica_fallback_total",
        "django_pgreplica_reads_total",
        "django_pgreplica_slot_retained_bytes",
    ):
        assert any(series in expr for expr in exprs), series
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"

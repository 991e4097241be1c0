"""The documentation builds cleanly and keeps up with the code it describes."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from django_pgreplica import checks
from django_pgreplica.conf import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def table_rows(page: str) -> list[list[str]]:
    """The cells of every Markdown table row on a docs page (header rows included)."""
    rows = []
    for line in (DOCS / page).read_text().splitlines():
        if line.startswith("|") and not re.fullmatch(r"[|\s:-]+", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def documented_default(value: Any) -> str:
    """How the configuration page spells a default: Python literals, strings in "..."."""
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail("mkdocs is not installed: pip install -e '.[dev]'", pytrace=False)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "configuration" / "index.html").is_file()


def test_every_setting_is_in_the_configuration_reference() -> None:
    text = (DOCS / "configuration.md").read_text()
    summary = {row[0]: row[1] for row in table_rows("configuration.md") if len(row) >= 2}
    headings = [line for line in text.splitlines() if line.startswith("#")]
    for key, value in DEFAULTS.items():
        cell = summary.get(f"`{key}`")
        assert cell is not None, f"{key} missing from the settings table"
        assert cell.startswith(documented_default(value)), (
            f"{key}: the table says {cell}, conf.DEFAULTS says {value!r}"
        )
        assert any(f"`{key}`" in heading for heading in headings), f"{key} has no section"
    documented = {cell.strip("`") for cell in summary if cell.startswith("`")}
    assert documented <= set(DEFAULTS), f"stale settings: {documented - set(DEFAULTS)}"


def test_every_system_check_is_in_the_checks_table() -> None:
    source = Path(checks.__file__).read_text()
    ids = set(re.findall(r'id="(django_pgreplica\.[EW]\d{3})"', source))
    assert ids, "no check ids found in checks.py"
    table = {row[0].strip("`") for row in table_rows("checks.md")}
    assert ids <= table, f"undocumented checks: {sorted(ids - table)}"
    stale = {cell for cell in table if cell.startswith("django_pgreplica.")} - ids
    assert not stale, f"documented checks that checks.py no longer has: {sorted(stale)}"


def test_every_metric_is_documented() -> None:
    source = (ROOT / "django_pgreplica" / "contrib" / "prometheus.py").read_text()
    names = set(re.findall(r'gauge\(\s*"([a-z_]+)"', source))
    names |= set(re.findall(r'PREFIX \+ "([a-z_]+)"', source))
    assert names, "no metric names found in contrib/prometheus.py"
    documented = {
        row[0].strip("`") for row in table_rows("monitoring.md") if row[0].startswith("`")
    }
    for name in names:
        assert f"django_pgreplica_{name}" in documented, f"django_pgreplica_{name} undocumented"


def test_every_alert_rule_is_documented() -> None:
    rules = (ROOT / "ops" / "prometheus" / "alerts.yml").read_text()
    alerts = set(re.findall(r"^\s*- alert:\s*(\S+)", rules, re.MULTILINE))
    assert alerts
    documented = {row[0].strip("`") for row in table_rows("monitoring.md")}
    assert alerts <= documented, f"undocumented alerts: {sorted(alerts - documented)}"

"""The alert rules, the scrape config and the dashboard, checked by the real promtool.

scripts/test.sh installs promtool (Debian's `prometheus` package) before the suite runs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from processor.adapters.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "sendguard.json"


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: scripts/test.sh installs it (apt-get install prometheus)")
    return subprocess.run(  # noqa: S603  # a fixed tool on our own files
        [tool, *args], capture_output=True, text=True, check=False, timeout=60, cwd=cwd
    )


def test_the_alert_rules_are_valid() -> None:
    """`promtool check rules` accepts every rule."""
    result = _promtool("check", "rules", "alerts.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_pass_their_unit_tests() -> None:
    """`promtool test rules`: each alert fires on its scenario and stays quiet on the benign one."""
    result = _promtool("test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scrape_config_is_valid(tmp_path: Path) -> None:
    """The compose stack's prometheus.yml, with its rule file where the container mounts it."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "info": ("_info",)}
"""The series names each metric type exposes (labelled metrics have no sample until used)."""


def _metric_names() -> set[str]:
    names: set[str] = set()
    for family in Metrics("names").registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def _names_in(expression: str) -> set[str]:
    return set(re.findall(r"\bsendguard_[a-z_]+\b", expression))


def test_the_alerts_name_only_metrics_that_exist() -> None:
    """A renamed metric would silence its alert: every name in a rule is exported."""
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    used = {name for g in groups for rule in g["rules"] for name in _names_in(rule["expr"])}
    assert used <= _metric_names()


def test_the_dashboard_names_only_metrics_that_exist() -> None:
    """Every panel query of the Grafana dashboard reads a metric the processes export."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert queries
    used = set().union(*(_names_in(q) for q in queries))
    assert used <= _metric_names()

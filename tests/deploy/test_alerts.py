"""Alert rules: promtool checks and unit tests, the PrometheusRule copy, runbook links, metric names."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from bridge.metrics import Metrics
from bridge.process_memory import ProcessMemory
from tests.deploy.conftest import (
    DEPLOY,
    KUSTOMIZE,
    OVERLAYS,
    ROOT,
    alert_rules,
    kustomize,
    load_yaml,
    run,
    runbook_base_url,
    tool,
)

pytestmark = pytest.mark.deploy

RULES = DEPLOY / "prometheus" / "alerts.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
#: The "no events" period each overlay sets.
NO_EVENTS_FOR = {"tt02": "72h", "production": "6h"}


def exported_registry() -> CollectorRegistry:
    """A registry with every metric a serving bridge process registers."""
    registry = CollectorRegistry()
    Metrics(registry)
    ProcessMemory(registry)  # registered by bridge.server for the process
    return registry


def exported_names() -> set[str]:
    """Every sample name the bridge exports (``_total``, ``_bucket``, … included)."""
    names = set()
    for family in exported_registry().collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (``altinn_bridge_*`` only)."""
    return set(re.findall(r"\baltinn_bridge_[a-z_]+\b", expr))


def test_promtool_check_rules() -> None:
    out = run(tool("promtool"), "check", "rules", str(RULES))
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


def test_promtool_unit_tests_pass() -> None:
    out = run(tool("promtool"), "test", "rules", str(RULE_TESTS), cwd=RULE_TESTS.parent)
    assert "SUCCESS" in out


def test_promtool_unit_tests_fail_when_an_alert_changes(tmp_path: Path) -> None:
    """The unit tests can fail: a threshold moved far enough breaks them."""
    broken = RULES.read_text().replace("> 0.05", "> 0.5")
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yaml").write_text(broken)
    (tmp_path / "alerts.test.yaml").write_text(RULE_TESTS.read_text())
    result = subprocess.run(
        [tool("promtool"), "test", "rules", "alerts.test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0
    assert b"AltinnBridgeHigh503Ratio" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_makes_it_fire_and_one_that_must_not() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = set(alert_rules())
    assert alerts - firing == set(), "alerts no unit test makes fire"
    assert alerts - quiet == set(), "alerts no unit test expects to stay quiet"
    assert firing | quiet <= alerts, "unit tests of alerts that do not exist"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors of a Markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#+\s+(.*)", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def test_every_alert_links_its_runbook_in_operations_md() -> None:
    """Absolute links, one base for all (the one an installer changes), an anchor per alert."""
    base = runbook_base_url()
    assert base.startswith("https://")
    assert base.endswith("/docs/operations.md")
    anchors = _anchors(OPERATIONS.read_text())
    for name, rule in alert_rules().items():
        url = rule["annotations"]["runbook_url"]
        assert url == f"{base}#{name.lower()}", name
        assert name.lower() in anchors, f"docs/operations.md has no section {name}"
        assert {"summary", "description"} <= rule["annotations"].keys(), name
        assert rule["labels"]["severity"] in ("critical", "warning"), name


def test_rules_and_dashboard_use_only_metrics_the_bridge_exports() -> None:
    exported = exported_names()
    used: set[str] = set()
    for rule in alert_rules().values():
        used |= metric_names_in(rule["expr"])
    dashboard = (DEPLOY / "grafana" / "altinn-kafka-bridge.json").read_text()
    used |= metric_names_in(dashboard)
    assert used, "no metric found in the rules and the dashboard"
    assert used - exported == set(), "metrics the bridge does not export"


def test_the_dashboard_shows_every_metric_the_bridge_exports() -> None:
    dashboard = (DEPLOY / "grafana" / "altinn-kafka-bridge.json").read_text()
    families = {family.name for family in exported_registry().collect()}
    assert families
    missing = {
        name for name in families if not re.search(rf"\b{name}(_total|_bucket|_count|_sum)?\b", dashboard)
    }
    assert missing == set(), "metrics without a panel in deploy/grafana/altinn-kafka-bridge.json"


def _prometheus_rule(resources: list[dict]) -> dict:
    [rule] = [r for r in resources if r["kind"] == "PrometheusRule"]
    return rule


def test_prometheusrule_carries_the_same_rules_as_the_plain_file() -> None:
    base = load_yaml(KUSTOMIZE / "base" / "prometheusrule.yaml")
    assert base["spec"]["groups"] == load_yaml(RULES)["groups"], (
        "deploy/kubernetes/base/prometheusrule.yaml differs from deploy/prometheus/alerts.yaml"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_rules_pass_promtool_and_differ_only_in_the_no_events_period(
    overlay: str, tmp_path: Path
) -> None:
    groups = _prometheus_rule(kustomize(KUSTOMIZE / "overlays" / overlay))["spec"]["groups"]
    rendered = tmp_path / f"{overlay}.rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": groups}))
    run(tool("promtool"), "check", "rules", str(rendered))

    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert rules["AltinnBridgeNoEvents"]["for"] == NO_EVENTS_FOR[overlay]
    plain = alert_rules()
    plain["AltinnBridgeNoEvents"] = {**plain["AltinnBridgeNoEvents"], "for": NO_EVENTS_FOR[overlay]}
    assert rules == plain


def test_no_runbook_url_in_deploy_is_relative() -> None:
    """Alertmanager and Grafana show runbook_url as a link: a repository path would be a dead one."""
    urls = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        urls += [(path.name, url) for url in re.findall(r"runbook_url:\s*(\S+)", path.read_text())]
    for target in ("base", *(f"overlays/{o}" for o in OVERLAYS)):
        for group in _prometheus_rule(kustomize(KUSTOMIZE / target))["spec"]["groups"]:
            urls += [(target, rule["annotations"]["runbook_url"]) for rule in group["rules"]]
    assert len(urls) > 3 * len(alert_rules())
    assert [(where, url) for where, url in urls if not url.startswith("https://")] == []

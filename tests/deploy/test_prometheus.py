"""A real Prometheus scrapes running bridges; every dashboard query and every rule must work.

Two bridges: one on the session broker (publishes, duplicates, dead letters, auth failures), one
pointed at a closed port (503s, producer errors, not ready). Both run their ops listener
(BRIDGE_OPS_PORT), as the Kubernetes manifests do. Prometheus (Debian's package) runs on 127.0.0.1
with a temporary data directory, scrapes the ops port of both every second and evaluates the alert
rules; after the traffic, every panel query of the Grafana dashboard is evaluated through its
HTTP API and must answer without error and with at least one series.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from devtools.broker import free_port
from tests.deploy.conftest import DEPLOY, run, tool
from tests.support.events import ALTINN_CONTENT_TYPE, INVALID, VALID, VALIDATION_FIXTURE
from tests.support.logs import LOG_DIR
from tests.support.waiting import polled, wait_for_status

pytestmark = pytest.mark.deploy

DASHBOARD = DEPLOY / "grafana" / "altinn-kafka-bridge.json"
RULES = DEPLOY / "prometheus" / "alerts.yaml"
JOB = "altinn-kafka-bridge"
TOKEN = "deploy-test-token-0123456789abcdef"
#: What Grafana would put in for its variables: this job, any namespace, a short rate window.
VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$job": JOB}


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title / refId, PromQL) of every panel target, variables substituted."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"unsubstituted variable in {panel['title']}: {expr}"
            queries.append((f"{panel['title']} / {target['refId']}", expr))
    return queries


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "namespace", "job"}
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 15
    for panel in graphs:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["description"], panel["title"]
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], (panel["title"], target["expr"])
            assert 'namespace=~"$namespace"' in target["expr"], (panel["title"], target["expr"])
    # What the issue asks the dashboard to show.
    text = json.dumps(panels)
    for metric in (
        "altinn_bridge_events_total",
        "altinn_bridge_publish_duration_seconds_bucket",
        "altinn_bridge_request_duration_seconds_bucket",
        "altinn_bridge_event_age_seconds_bucket",
        "altinn_bridge_redeliveries_total",
        "altinn_bridge_requests_in_flight",
        "altinn_bridge_ready",
        "altinn_bridge_kafka_producer_errors_total",
        "altinn_bridge_last_event_timestamp_seconds",
        "altinn_bridge_process_resident_memory_bytes",
        "altinn_bridge_memory_limit_bytes",
    ):
        assert metric in text, metric
    assert re.search(r'status=\\"503\\"', text)
    assert 'outcome=\\"dead_lettered\\"' in text
    assert 'outcome=\\"duplicate\\"' in text


class Prometheus:
    """Debian's prometheus on 127.0.0.1 with a temporary data directory."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.workdir = workdir
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = LOG_DIR / f"prometheus-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        run(tool("promtool"), "check", "config", str(self.config))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        prometheus = Prometheus(tmp_path, targets)
        prometheus.start()
        started.append(prometheus)
        return prometheus

    yield start
    for prometheus in started:
        prometheus.stop()


def _ops_env(address: str) -> dict[str, str]:
    """The variables that start the ops listener (probes and /metrics) on ``host:port``."""
    host, _, port = address.rpartition(":")
    return {"BRIDGE_OPS_HOST": host, "BRIDGE_OPS_PORT": port}


async def _query(http: aiohttp.ClientSession, prometheus: Prometheus, expr: str) -> dict[str, Any]:
    async with http.get(prometheus.url + "/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    if body.get("status") != "success":
        pytest.fail(f"query failed: {expr}\n{body}", pytrace=False)
    return body["data"]


async def _post(http: aiohttp.ClientSession, url: str, body: bytes) -> int:
    async with http.post(url, data=body, headers={"Content-Type": ALTINN_CONTENT_TYPE}) as response:
        await response.read()
        return response.status


async def _traffic(http: aiohttp.ClientSession, good: str, broken: str | None) -> None:
    """Every outcome the dashboard shows (503s only with a ``broken`` bridge)."""
    events = f"{good}/api/v1/events/{TOKEN}"
    valid = [p.read_bytes() for p in VALID if p != VALIDATION_FIXTURE]
    for body in valid:
        assert await _post(http, events, body) == 200
    for body in valid[:3]:  # redeliveries: dedupe hits
        assert await _post(http, events, body) == 200
    assert await _post(http, events, VALIDATION_FIXTURE.read_bytes()) == 200
    assert await _post(http, events, INVALID[0].read_bytes()) == 200  # dead-lettered
    assert await _post(http, f"{good}/api/v1/events/wrong-token-0123456789abcdef", valid[0]) == 401
    for body in valid[:5] if broken is not None else []:  # Kafka unreachable: 503
        assert await _post(http, f"{broken}/api/v1/events", body) == 503


async def test_every_dashboard_query_returns_series_from_a_real_prometheus(
    kafka_bootstrap, start_bridge, http, prometheus_factory
) -> None:
    good_ops, broken_ops = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    good = start_bridge(kafka_bootstrap, BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS=TOKEN, **_ops_env(good_ops))
    broken = start_bridge(
        f"127.0.0.1:{free_port()}",
        BRIDGE_DEDUPE="memory",
        BRIDGE_PUBLISH_TIMEOUT_S="0.5",
        **_ops_env(broken_ops),
    )
    # Prometheus scrapes the ops listeners, as the ServiceMonitor does.
    prometheus = prometheus_factory([good_ops, broken_ops])
    await wait_for_status(http, f"http://{good_ops}/readyz", 200)
    await wait_for_status(http, f"http://{broken_ops}/healthz", 200)
    await wait_for_status(http, prometheus.url + "/-/ready", 200, timeout_s=30)
    await _wait_until(http, prometheus, f'count(up{{job="{JOB}"}} == 1) == 2', "both bridges scraped")
    up = await _query(http, prometheus, f'up{{job="{JOB}"}}')
    assert {r["metric"]["instance"] for r in up["result"]} == {good_ops, broken_ops}
    # Up, and nothing published yet: the no-events alert starts counting its period.
    await _wait_for_alert(http, prometheus, "AltinnBridgeNoEvents", present=True)

    await _traffic(http, good.url, broken.url)
    # The readiness gauge is set by /readyz; the kubelet would call it, on the ops port.
    for address in (good_ops, broken_ops):
        async with http.get(f"http://{address}/readyz") as response:
            await response.read()

    queries = dashboard_queries()
    deadline = time.monotonic() + 30
    while True:
        empty = [name for name, expr in queries if not (await _query(http, prometheus, expr))["result"]]
        if not empty or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert empty == [], "dashboard queries without any series"

    # Readiness per pod shows one ready and one not.
    ready = await _query(http, prometheus, f'altinn_bridge_ready{{job="{JOB}"}}')
    assert {r["metric"]["instance"]: float(r["value"][1]) for r in ready["result"]} == {
        good_ops: 1.0,
        broken_ops: 0.0,
    }
    # The template variables' metric is there.
    assert (await _query(http, prometheus, "altinn_bridge_build_info"))["result"]
    # The last published event is seconds old, not a default; each bridge holds its own memory.
    age = await _query(
        http, prometheus, f'time() - max(altinn_bridge_last_event_timestamp_seconds{{job="{JOB}"}})'
    )
    assert 0 <= float(age["result"][0]["value"][1]) < 120
    resident = await _query(http, prometheus, f'altinn_bridge_process_resident_memory_bytes{{job="{JOB}"}}')
    assert {r["metric"]["instance"] for r in resident["result"]} == {good_ops, broken_ops}
    assert all(20e6 < float(r["value"][1]) < 1e9 for r in resident["result"]), resident
    # Events flow again: the no-events alert is no longer pending.
    await _wait_for_alert(http, prometheus, "AltinnBridgeNoEvents", present=False)

    # Every alert rule evaluates without error against the real series.
    async with http.get(prometheus.url + "/api/v1/rules") as response:
        groups = (await response.json())["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(yaml.safe_load(RULES.read_text())["groups"][0]["rules"]) + 1
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []

    assert good.terminate() == 0
    assert broken.terminate() == 0


async def _wait_for_alert(
    http: aiohttp.ClientSession, prometheus: Prometheus, name: str, *, present: bool
) -> None:
    """Until Prometheus lists ``name`` as pending or firing (``present``), or no longer does."""

    async def active() -> set[str]:
        async with http.get(prometheus.url + "/api/v1/alerts") as response:
            return {alert["labels"]["alertname"] for alert in (await response.json())["data"]["alerts"]}

    try:
        await polled(
            active,
            lambda names: (name in names) == present,
            what=f"Prometheus: {name} {'active' if present else 'resolved'}",
            timeout_s=30,
            every_s=0.5,
        )
    except AssertionError as exc:
        pytest.fail(f"{exc}; log: {prometheus.log}", pytrace=False)


async def _wait_until(http: aiohttp.ClientSession, prometheus: Prometheus, expr: str, what: str) -> None:
    try:
        await polled(
            lambda: _query(http, prometheus, expr),
            lambda answer: answer["result"],
            what=f"Prometheus: {what} ({expr})",
            timeout_s=30,
            every_s=0.5,
        )
    except AssertionError as exc:
        pytest.fail(f"{exc}; log: {prometheus.log}", pytrace=False)


async def test_promtool_check_metrics_accepts_a_live_bridge(kafka_bootstrap, start_bridge, http) -> None:
    ops = f"127.0.0.1:{free_port()}"
    bridge = start_bridge(kafka_bootstrap, BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS=TOKEN, **_ops_env(ops))
    await wait_for_status(http, bridge.url + "/readyz", 200)
    await _traffic(http, bridge.url, None)
    # Both listeners serve a valid exposition (the same registry).
    for url in (bridge.url, f"http://{ops}"):
        async with http.get(url + "/metrics") as response:
            exposition = await response.read()
        assert b"altinn_bridge_events_total" in exposition, url
        out = run(tool("promtool"), "check", "metrics", stdin=exposition)
        assert out == "", url
    assert bridge.terminate() == 0

"""Kubernetes manifests: rendered with kustomize, validated offline, and checked against the code.

kubernetes-validate checks every built-in kind against the OpenAPI schemas of the Kubernetes
versions in KUBERNETES_VERSIONS (strict: unknown fields are errors); the Prometheus Operator's
kinds are checked against their CRD schemas by tools/node/validate-crds.mjs. Then the facts the
manifests share with the code: probe paths, ports, environment variable names, a configuration
the bridge accepts, and a shutdown that fits in the grace period.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bridge.app import EVENTS_PATH, create_app
from bridge.config import SOURCE_PRESETS, VARIABLES, Settings
from tests.deploy.conftest import (
    DEPLOY,
    KUSTOMIZE,
    NODE_TOOLS,
    OVERLAYS,
    alert_rules,
    kustomize,
    node_tools_ready,
    run,
    runbook_base_url,
    tool,
)
from tests.support.settings import make_settings

pytestmark = pytest.mark.deploy

#: An older release many clusters still run (native sidecars need >= 1.29), and the newest one
#: kubernetes-validate 1.37.0 has schemas for. The manifests must be valid on both.
KUBERNETES_VERSIONS = ("1.31", "1.37")
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "PodMonitor"}
EXAMPLES = sorted((KUSTOMIZE / "examples").glob("*.yaml"))
TARGETS = ["base", *(f"overlays/{o}" for o in OVERLAYS)]
#: What the overlays must set for their Altinn environment (docs/configuration.md, BRIDGE_FILTER_SOURCES and
#: BRIDGE_ALLOWED_NETWORKS presets).
ENVIRONMENTS = {
    "overlays/tt02": {"BRIDGE_FILTER_SOURCES": "tt02", "BRIDGE_ALLOWED_NETWORKS": "altinn-tt02"},
    "overlays/production": {
        "BRIDGE_FILTER_SOURCES": "production",
        "BRIDGE_ALLOWED_NETWORKS": "altinn-production",
    },
}
#: A token of the right shape for settings checks (the real ones live in a Secret).
FAKE_TOKEN = "x" * 32


def _resources(target: str) -> list[dict[str, Any]]:
    return kustomize(KUSTOMIZE / target)


def _example(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _one(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [r for r in resources if r["kind"] == kind]
    return found


def _routes() -> set[str]:
    """The paths the app really serves (token auth on, as in the manifests)."""
    app = create_app(make_settings(BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS=FAKE_TOKEN))
    return {resource.canonical for resource in app.router.resources()}


def _validate_builtin(resources: list[dict[str, Any]], version: str) -> list[str]:
    problems = []
    for resource in resources:
        if resource["kind"] in CUSTOM_KINDS:
            continue
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        try:
            checked = kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name}: {exc.message}")
        else:
            assert checked == version
    return problems


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_rendered_manifests_validate_against_kubernetes(target: str, version: str) -> None:
    resources = _resources(target)
    kinds = {r["kind"] for r in resources}
    assert kinds >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    }
    assert _validate_builtin(resources, version) == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_kubernetes(example: Path, version: str) -> None:
    assert _validate_builtin(_example(example), version) == []


def test_validation_catches_a_wrong_field() -> None:
    """The check can fail: a misspelt field is an error in strict mode."""
    deployment = _one(_resources("base"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    problems = _validate_builtin([deployment], KUBERNETES_VERSIONS[0])
    assert problems
    assert "readinessProbes" in problems[0]


def test_custom_resources_validate_against_the_prometheus_operator_crds(tmp_path: Path) -> None:
    node_tools_ready()
    resources = [r for target in TARGETS for r in _resources(target) if r["kind"] in CUSTOM_KINDS]
    assert len(resources) == 2 * len(TARGETS)
    examples = [r for example in EXAMPLES for r in _example(example) if r["kind"] in CUSTOM_KINDS]
    assert [r["kind"] for r in examples] == ["PodMonitor"], "the sidecar's PodMonitor"
    resources += examples
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(resources))
    out = run(tool("node"), str(NODE_TOOLS / "validate-crds.mjs"), str(path), cwd=NODE_TOOLS)
    assert out.count("OK ") == len(resources), out

    # The check can fail: a rule without an expression is refused.
    rule = next(r for r in resources if r["kind"] == "PrometheusRule")
    broken = json.loads(json.dumps(rule))
    del broken["spec"]["groups"][0]["rules"][0]["expr"]
    path.write_text(json.dumps([broken]))
    result = subprocess.run(
        [tool("node"), str(NODE_TOOLS / "validate-crds.mjs"), str(path)],
        cwd=NODE_TOOLS,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 1
    assert b"INVALID" in result.stdout


# --- the manifests and the code agree ---------------------------------------------------------


def _container_env(container: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment a container gets: envFrom ConfigMaps, then env (secrets as placeholders)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["key"] == item["name"], "a Secret key named like the variable it fills"
            assert VARIABLES[item["name"]].secret, f"{item['name']} comes from a Secret but is not secret"
            if not ref.get("optional"):
                env[item["name"]] = FAKE_TOKEN
    return env


def _settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


def _http_get_paths(container: dict[str, Any]) -> dict[str, str]:
    return {
        probe: container[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
        if probe in container
    }


def _named_ports(container: dict[str, Any]) -> dict[str, int]:
    """The container's ports by name (TCP only, every one named)."""
    ports = container["ports"]
    assert all(p.get("protocol", "TCP") == "TCP" for p in ports)
    named = {p["name"]: p["containerPort"] for p in ports}
    assert len(named) == len(ports), "every port named, no name twice"
    return named


def _check_probes_on_the_ops_port(container: dict[str, Any], settings: Settings) -> None:
    """Every probe is an httpGet on the port the ops listener (BRIDGE_OPS_PORT) binds."""
    paths = _http_get_paths(container)
    assert paths == {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    assert set(paths.values()) <= _routes()
    assert settings.http.ops_port != 0, "BRIDGE_OPS_PORT is set"
    assert settings.http.ops_host == "0.0.0.0", "the kubelet reaches the ops port from outside the pod"
    ports = _named_ports(container)
    for probe in paths:
        port = container[probe]["httpGet"]["port"]
        assert ports.get(port, port) == settings.http.ops_port, f"{probe} is not on BRIDGE_OPS_PORT"


def _bridge(resources: list[dict[str, Any]]) -> tuple[dict[str, Any], Settings]:
    """The Deployment's bridge container and the settings its environment gives."""
    config_maps = {r["metadata"]["name"]: r["data"] for r in resources if r["kind"] == "ConfigMap"}
    [container] = _one(resources, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container, _settings(_container_env(container, config_maps))


@pytest.mark.parametrize("target", TARGETS)
def test_deployment_matches_the_code(target: str) -> None:
    resources = _resources(target)
    config_maps = {r["metadata"]["name"]: r["data"] for r in resources if r["kind"] == "ConfigMap"}
    deployment = _one(resources, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = _container_env(container, config_maps)

    # Every variable is one the bridge reads, and together they are a configuration it accepts.
    assert set(env) - set(VARIABLES) == set(), "variables the bridge does not read"
    settings = _settings(env)
    for name, value in ENVIRONMENTS.get(target, {}).items():
        assert env[name] == value, name
    if target != "base":
        assert settings.filters.sources == (SOURCE_PRESETS[ENVIRONMENTS[target]["BRIDGE_FILTER_SOURCES"]],)

    # Probes: liveness never touches Kafka, readiness does; both are routes the app serves, on
    # the ops listener (its own thread: not queued behind event connections).
    _check_probes_on_the_ops_port(container, settings)

    # The named ports are the ports the bridge listens on: events, and probes and metrics.
    assert _named_ports(container) == {"http": settings.http.port, "ops": settings.http.ops_port}
    assert settings.http.host == "0.0.0.0"

    # Shutdown: drain < grace < the pod's termination grace period.
    assert settings.shutdown.drain_s < settings.shutdown.grace_s < pod["terminationGracePeriodSeconds"]

    # Image user, read-only root, no privileges.
    user = re.search(r"^USER (\d+):(\d+)$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    assert user is not None
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        int(user.group(1)),
        int(user.group(2)),
    )
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("target", TARGETS)
def test_service_monitor_and_policies_point_at_the_bridge(target: str) -> None:
    resources = _resources(target)
    deployment = _one(resources, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()

    container, settings = _bridge(resources)
    container_ports = _named_ports(container)

    service = _one(resources, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # Service port name -> the container port number it sends to.
    service_ports = {p["name"]: container_ports[p["targetPort"]] for p in service["spec"]["ports"]}
    assert service_ports == {"http": settings.http.port, "ops": settings.http.ops_port}

    # Prometheus scrapes /metrics on the ops listener.
    monitor = _one(resources, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert service_ports[endpoint["port"]] == settings.http.ops_port, "not scraping BRIDGE_OPS_PORT"
    assert "/metrics" in _routes()
    # The job label the rules and the dashboard select on.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "altinn-kafka-bridge"

    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        resource = _one(resources, kind)
        labels = resource["spec"].get("selector", resource["spec"].get("podSelector"))["matchLabels"]
        assert labels.items() <= pod_labels.items(), kind
    # Ingress: events from the ingress controller to the event port, scrapes from Prometheus to
    # the ops port the ServiceMonitor uses; nothing else (the kubelet's probes are not filtered).
    policy = _one(resources, "NetworkPolicy")
    allowed = {
        (
            source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            container_ports[p["port"]],
        )
        for rule in policy["spec"]["ingress"]
        for source in rule["from"]
        for p in rule["ports"]
    }
    assert allowed == {
        ("ingress-nginx", settings.http.port),
        ("monitoring", service_ports[endpoint["port"]]),
    }
    hpa = _one(resources, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_sidecar_example_listens_on_localhost_and_is_probed_and_scraped_on_the_ops_port() -> None:
    deployment, monitor = _example(KUSTOMIZE / "examples" / "sidecar.yaml")
    assert (deployment["kind"], monitor["kind"]) == ("Deployment", "PodMonitor")
    pod = deployment["spec"]["template"]["spec"]
    [bridge] = pod["initContainers"]
    assert bridge["restartPolicy"] == "Always", "a native sidecar"
    env = _container_env(bridge, {})
    assert set(env) <= set(VARIABLES)
    settings = _settings(env)
    # Events only from inside the pod; probes and scrapes from outside, on the ops listener.
    assert settings.http.host == "127.0.0.1"
    assert _named_ports(bridge) == {"ops": settings.http.ops_port}
    _check_probes_on_the_ops_port(bridge, settings)
    assert settings.shutdown.drain_s < settings.shutdown.grace_s < pod["terminationGracePeriodSeconds"]
    [app] = pod["containers"]
    assert {
        "name": "ALTINN_BRIDGE_URL",
        "value": f"http://127.0.0.1:{settings.http.port}{EVENTS_PATH}",
    } in app["env"]
    assert bridge["securityContext"]["readOnlyRootFilesystem"] is True

    # The PodMonitor scrapes the sidecar's ops port of these pods, as the job the rules select on.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert _named_ports(bridge)[endpoint["port"]] == settings.http.ops_port
    assert {"action": "replace", "targetLabel": "job", "replacement": "altinn-kafka-bridge"} in endpoint[
        "relabelings"
    ]


def test_ingress_example_exposes_only_the_event_endpoint() -> None:
    [ingress] = _example(KUSTOMIZE / "examples" / "ingress-nginx.yaml")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [(EVENTS_PATH + "/", "Prefix")]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/enable-access-log"] == "false"
    allowed = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/whitelist-source-range"]
    assert allowed == "20.100.46.139/32"  # Altinn production's egress address (docs/http-api.md)


def test_secret_example_holds_only_secret_variables() -> None:
    [secret] = _example(KUSTOMIZE / "examples" / "secret.yaml")
    assert set(secret["stringData"]) <= {name for name, var in VARIABLES.items() if var.secret}


# --- monitoring that drops into kube-prometheus-stack ------------------------------------------

DASHBOARD = DEPLOY / "grafana" / "altinn-kafka-bridge.json"
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _render_beside(tmp_path: Path, kustomization: dict[str, Any], *resources: Path) -> list[dict[str, Any]]:
    """Render a kustomization of ours the way an installer's own overlay would include it."""
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(r, tmp_path) for r in resources],
        **kustomization,
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kustomize(tmp_path)


def _runbook_urls(resources: list[dict[str, Any]]) -> dict[str, str]:
    rule = _one(resources, "PrometheusRule")
    return {r["alert"]: r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]}


@pytest.mark.parametrize("target", TARGETS)
def test_the_dashboard_configmap_carries_the_dashboard_for_grafanas_sidecar(target: str) -> None:
    resources = _resources(target)
    [config_map] = [
        r for r in resources if r["kind"] == "ConfigMap" and "grafana_dashboard" in r["metadata"]["labels"]
    ]
    # The label and value kube-prometheus-stack's Grafana sidecar looks for; a name without a hash
    # suffix, so an update replaces it instead of adding a second one.
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["name"] == "altinn-kafka-bridge-dashboard"
    # The file itself, byte for byte: one dashboard, not a copy that drifts.
    assert config_map["data"] == {DASHBOARD.name: DASHBOARD.read_text()}
    assert json.loads(config_map["data"][DASHBOARD.name])["uid"] == "altinn-kafka-bridge"
    # In the bridge's namespace, like everything else of the overlay.
    deployment = _one(resources, "Deployment")
    assert config_map["metadata"].get("namespace") == deployment["metadata"].get("namespace")
    # The render-time ConfigMap of the runbook base is never applied.
    assert not [r for r in resources if r["metadata"]["name"].startswith("altinn-kafka-bridge-runbooks")]


@pytest.mark.parametrize("target", TARGETS)
def test_runbook_links_are_absolute_with_the_targets_base(target: str) -> None:
    base = runbook_base_url()
    urls = _runbook_urls(_resources(target))
    assert urls == {alert: f"{base}#{alert.lower()}" for alert in alert_rules()}


def test_one_base_url_in_an_overlay_moves_every_runbook_link(tmp_path: Path) -> None:
    """An installer's overlay sets base_url once and includes the component; every link follows."""
    ours = tmp_path / "ours"
    ours.mkdir()
    resources = _render_beside(
        ours,
        {
            "components": [os.path.relpath(KUSTOMIZE / "components" / "runbook-links", ours)],
            "configMapGenerator": [
                {
                    "name": "altinn-kafka-bridge-runbooks",
                    "behavior": "merge",
                    "literals": ["base_url=https://wiki.example.net/team/bridge-runbook"],
                }
            ],
        },
        KUSTOMIZE / "overlays" / "production",
    )
    urls = _runbook_urls(resources)
    assert urls == {
        alert: f"https://wiki.example.net/team/bridge-runbook#{alert.lower()}" for alert in alert_rules()
    }
    # Only the links moved: the production overlay's own change (the no-events period) is kept.
    assert _one(resources, "PrometheusRule")["spec"]["groups"][1]["rules"][0]["for"] == "6h"
    assert not [r for r in resources if r["metadata"]["name"].startswith("altinn-kafka-bridge-runbooks")]


def _commented_release_patch(overlay: Path) -> list[dict[str, Any]]:
    """The overlay's commented-out ``release`` patch, uncommented."""
    lines = overlay.read_text().splitlines()
    start = lines.index("  # - target:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # ") or not line[4:].startswith(("-", " ")):
            break
        block.append(line[4:])
    return yaml.safe_load("\n".join(block))


@pytest.mark.parametrize("target", TARGETS)
def test_service_monitor_and_rules_carry_kube_prometheus_stacks_release_label(target: str) -> None:
    for resource in _resources(target):
        labels = resource["metadata"].get("labels", {})
        if resource["kind"] in MONITORING_KINDS:
            assert labels["release"] == "kube-prometheus-stack", resource["kind"]
        else:
            assert "release" not in labels, resource["kind"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlays_commented_release_patch_relabels_both(overlay: str, tmp_path: Path) -> None:
    patch = _commented_release_patch(KUSTOMIZE / "overlays" / overlay / "kustomization.yaml")
    resources = _render_beside(tmp_path, {"patches": patch}, KUSTOMIZE / "overlays" / overlay)
    relabelled = {
        r["kind"] for r in resources if r["metadata"]["labels"].get("release") == "my-monitoring-release"
    }
    assert relabelled == MONITORING_KINDS

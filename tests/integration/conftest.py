"""Real broker, real bridge process, real sockets.

The session broker is Tansu (in memory) started here, unless
``BRIDGE_TEST_KAFKA_BOOTSTRAP`` points the suite at an existing Kafka.
Bridge processes run ``python -m bridge`` with their stdout in the suite's log
directory, so their lines are scanned for national identity numbers too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from bridge.routing import Router
from devtools.broker import Broker, S3Server, free_port, provision, start_broker
from tests.conftest import LOG_DIR, make_settings

pytestmark = pytest.mark.integration

EXTERNAL_KAFKA_ENV = "BRIDGE_TEST_KAFKA_BOOTSTRAP"
#: The settings the bridge processes run with (dedupe in Kafka, the production default).
BRIDGE_SETTINGS = make_settings(BRIDGE_DEDUPE="kafka")
#: The event topics (what consumers read); ``provision`` also creates the dedupe state topic.
DEFAULT_TOPICS = Router(BRIDGE_SETTINGS.topics).all_topics()
DEDUPE_TOPIC = BRIDGE_SETTINGS.dedupe.topic


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap of the session's broker, with the default topics created."""
    external = os.environ.get(EXTERNAL_KAFKA_ENV)
    if external:
        asyncio.run(provision(external, BRIDGE_SETTINGS))
        yield external
        return
    broker = start_broker(LOG_DIR)
    try:
        asyncio.run(provision(broker.bootstrap, BRIDGE_SETTINGS))
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A memory broker for one test that stops, pauses or kills it."""
    broker = start_broker(LOG_DIR)
    try:
        asyncio.run(provision(broker.bootstrap, BRIDGE_SETTINGS))
        yield broker
    finally:
        if broker.process is not None and broker.process.poll() is None:
            os.killpg(broker.process.pid, signal.SIGCONT)
        broker.stop()


@pytest.fixture
def durable_broker() -> Iterator[Broker]:
    """A broker on local S3 storage: what it acknowledged survives SIGKILL."""
    s3 = S3Server(free_port(), LOG_DIR / "moto.log")
    s3.start()
    try:
        broker = start_broker(LOG_DIR, storage="s3://tansu/", env=s3.broker_env())
        try:
            asyncio.run(provision(broker.bootstrap, BRIDGE_SETTINGS))
            yield broker
        finally:
            broker.stop()
    finally:
        s3.stop()


@dataclass
class BridgeProcess:
    """``python -m bridge`` on a free port of 127.0.0.1."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return LOG_DIR / f"bridge-{self.port}.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "KAFKA_"))}
        env.update(
            {
                "BRIDGE_HTTP_HOST": "127.0.0.1",
                "BRIDGE_HTTP_PORT": str(self.port),
                "KAFKA_ENABLE_IDEMPOTENCE": "false",  # Tansu cannot (see README)
                "BRIDGE_SHUTDOWN_DRAIN_S": "0",
                "BRIDGE_AUTH": "none",  # tests of authentication set it back
                **self.env,
            }
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bridge", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


async def wait_for_status(
    session: aiohttp.ClientSession, url: str, status: int, timeout_s: float = 20.0
) -> None:
    """Poll ``url`` until it answers ``status``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as response:
                last = response.status
                if response.status == status:
                    return
        except aiohttp.ClientError as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout_s} s (last: {last})")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
def start_bridge() -> Iterator[object]:
    """``start_bridge(bootstrap, **env)`` → a started :class:`BridgeProcess`; all are stopped afterwards."""
    started: list[BridgeProcess] = []

    def start(bootstrap: str, **env: str) -> BridgeProcess:
        bridge = BridgeProcess({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, **env})
        bridge.start()
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        if bridge.process is not None and bridge.process.poll() is None:
            bridge.process.kill()
            bridge.process.wait()

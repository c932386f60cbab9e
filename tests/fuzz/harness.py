"""Apps on aiohttp's test server for the HTTP property tests, driven from synchronous code.

Hypothesis tests are synchronous, so the apps live on an event loop of their
own and each request runs to completion on it. Requests go through aiohttp's
test client, or as raw bytes over a socket for what a client library will not
send (bytes that are not UTF-8 in headers, slow bodies, oversized headers).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from bridge.app import create_app
from bridge.config import Settings
from bridge.errors import PublishError
from bridge.state import BRIDGE
from tests.fuzz.support import Contract, fuzz_settings
from tests.support.fakes import FakePublisher

T = TypeVar("T")

#: The configurations the HTTP properties run against, by name.
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "default": {},
    "reject": {"BRIDGE_INVALID_EVENT_POLICY": "reject"},
    "filters": {
        "BRIDGE_FILTER_SOURCES": "production",
        "BRIDGE_FILTER_TYPES": "correspondencepublished,attachmentpublished",
        "BRIDGE_FILTER_ALTERNATIVESUBJECTS": "/organisation/",
    },
    "small-limits": {
        "BRIDGE_MAX_BODY_BYTES": "1024",
        "BRIDGE_MAX_BATCH_BYTES": "2048",
        "BRIDGE_MAX_BATCH_EVENTS": "3",
    },
    "large-limits": {"BRIDGE_MAX_BODY_BYTES": str(4 * 1024 * 1024)},
    "slow-clients": {"BRIDGE_READ_TIMEOUT_S": "0.5", "BRIDGE_KEEPALIVE_TIMEOUT_S": "1"},
    "kafka-down": {},
}
#: Configurations whose publisher fails every publish: 503 is the right answer there.
KAFKA_DOWN = frozenset({"kafka-down"})


@dataclass
class Answer:
    """What came back: status, headers (first value of each) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class AppUnderTest:
    """One running app: its client, fake publisher, settings and OpenAPI contract."""

    name: str
    client: TestClient
    publisher: FakePublisher
    settings: Settings
    contract: Contract

    @property
    def kafka_down(self) -> bool:
        return self.name in KAFKA_DOWN

    @property
    def address(self) -> tuple[str, int]:
        server = self.client.server
        assert server.port is not None
        return str(server.host), server.port


class Harness:
    """Every configuration's app on one private event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.apps: dict[str, AppUnderTest] = {}
        for name, env in CONFIGURATIONS.items():
            self.apps[name] = self.run(self._start(name, fuzz_settings(**env)))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def _start(self, name: str, settings: Settings) -> AppUnderTest:
        publisher = FakePublisher()
        if name in KAFKA_DOWN:
            publisher.fail_with = PublishError("timeout", "no acknowledgement within 10 s (fake)")
        app = create_app(settings, publisher=publisher, registry=CollectorRegistry())
        server = TestServer(app)
        # The server option bridge.server.serve sets on its AppRunner (TestServer's own
        # constructor drops such keywords; start_server hands them to the runner).
        await server.start_server(keepalive_timeout=settings.http.keepalive_timeout_s)
        client = TestClient(server)
        await client.start_server()
        for _ in range(200):
            if app[BRIDGE].lifecycle.producer_started:
                break
            await asyncio.sleep(0.01)
        return AppUnderTest(name, client, publisher, settings, Contract())

    def close(self) -> None:
        for app in self.apps.values():
            self.run(app.client.close())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def request(
        self,
        app: AppUnderTest,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> Answer:
        """One request through aiohttp's test client; no Content-Type unless ``headers`` has one."""

        async def go() -> Answer:
            skip = [] if any(k.lower() == "content-type" for k in headers) else ["Content-Type"]
            async with app.client.request(
                method, path, headers=headers, data=body, skip_auto_headers=skip
            ) as response:
                return Answer(
                    response.status, {k: response.headers[k] for k in response.headers}, await response.read()
                )

        return self.run(go())

    def raw(self, app: AppUnderTest, request: bytes, *, timeout_s: float = 5.0) -> Answer | None:
        """Send ``request`` as raw bytes; the answer's head and body, None when none came in time."""
        return self.run(raw_exchange(app.address, request, timeout_s=timeout_s))


async def raw_exchange(address: tuple[str, int], request: bytes, *, timeout_s: float) -> Answer | None:
    """Write raw bytes, read one HTTP/1.x answer (Content-Length framed); None on timeout."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            return await read_answer(reader)
    except TimeoutError:
        return None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One HTTP/1.x response from ``reader``."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().title(), value.strip())
    length = int(headers.get("Content-Length", "0"))
    body = await reader.readexactly(length)
    return Answer(int(status_line.split()[1]), headers, body)

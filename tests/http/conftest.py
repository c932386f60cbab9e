"""HTTP-level fixtures: the real app on aiohttp's test server, with the fake publisher.

The helpers the HTTP tests share (posting as Altinn does, checking answers, reading
metrics, the fixtures on disk) are in tests/support.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from bridge.app import create_app
from bridge.config import Settings
from bridge.state import BRIDGE
from tests.support.fakes import FakePublisher
from tests.support.settings import make_settings

MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_client(aiohttp_client, fake_publisher: FakePublisher, registry: CollectorRegistry) -> MakeClient:
    """``await make_client(**env)``: a test client for an app built from ``env``.

    ``wait_for_producer=False`` returns at once instead of waiting for the
    producer to start (for tests that hold it back).
    """

    async def make(
        settings: Settings | None = None, *, wait_for_producer: bool = True, **env: str
    ) -> TestClient:
        app = create_app(settings or make_settings(**env), publisher=fake_publisher, registry=registry)
        client = await aiohttp_client(app)
        # The producer connects in the background; with the fake it is immediate.
        for _ in range(100 if wait_for_producer else 0):
            if app[BRIDGE].lifecycle.producer_started:
                break
            await asyncio.sleep(0.01)
        return client

    return make

"""HTTP-level fixtures: the real app on aiohttp's test server, with a fake publisher."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from bridge.app import create_app
from bridge.config import Settings
from bridge.state import BRIDGE
from tests.conftest import FakePublisher, make_settings

MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_client(aiohttp_client, fake_publisher: FakePublisher, registry: CollectorRegistry) -> MakeClient:
    """``await make_client(**env)``: a test client for an app built from ``env``."""

    async def make(settings: Settings | None = None, **env: str) -> TestClient:
        app = create_app(settings or make_settings(**env), publisher=fake_publisher, registry=registry)
        client = await aiohttp_client(app)
        # The producer connects in the background; with the fake it is immediate.
        for _ in range(100):
            if app[BRIDGE].readiness.producer_started:
                break
            await asyncio.sleep(0.01)
        return client

    return make

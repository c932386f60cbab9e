"""Talking to the bridge over HTTP as Altinn does, and checking its answers.

The paths, media types and problem ``type`` URNs are docs/http-api.md's ("Answers on POST
/api/v1/events"), written out here rather than imported from the package under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from bridge.state import BRIDGE
from tests.support.events import ALTINN_CONTENT_TYPE, body_bytes

EVENTS_PATH = "/api/v1/events"
#: Every problem ``type`` starts with this (docs/http-api.md, "Answers on POST /api/v1/events").
PROBLEM_TYPE = "urn:altinn-kafka-bridge:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for bridges, fakes and tools on real sockets."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def post_event(
    client: TestClient, body: bytes | Path, content_type: str | None = ALTINN_CONTENT_TYPE
) -> ClientResponse:
    """POST ``body`` (bytes or a fixture file) as Altinn does; ``None`` sends no Content-Type."""
    data = body_bytes(body)
    if content_type is None:
        return await client.post(EVENTS_PATH, data=data, skip_auto_headers=["Content-Type"])
    return await client.post(EVENTS_PATH, data=data, headers={"Content-Type": content_type})


async def json_answer(response: ClientResponse, status: int = 200) -> dict[str, Any]:
    """The JSON body of a non-problem answer with ``status``."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "application/json", text
    body = orjson.loads(text)
    assert isinstance(body, dict)
    return body


def assert_problem(status: int, content_type: str, body: bytes) -> dict[str, Any]:
    """A non-2xx answer: RFC 9457 with the members docs/http-api.md promises; the problem."""
    assert content_type == PROBLEM_CONTENT_TYPE, (status, content_type, body[:300])
    problem = orjson.loads(body)
    assert isinstance(problem, dict), problem
    assert problem["status"] == status, problem
    assert isinstance(problem["type"], str), problem
    assert problem["type"].startswith(PROBLEM_TYPE), problem
    assert len(problem["type"]) > len(PROBLEM_TYPE), problem
    for member in ("title", "detail"):
        assert isinstance(problem[member], str), problem
        assert problem[member], problem
    return problem


async def problem_answer(response: ClientResponse, status: int, slug: str) -> dict[str, Any]:
    """The problem answered with ``status`` and type ``<PROBLEM_TYPE><slug>`` (see :func:`assert_problem`)."""
    body = await response.read()
    assert response.status == status, body.decode(errors="replace")
    problem = assert_problem(status, response.content_type, body)
    assert problem["type"] == PROBLEM_TYPE + slug, problem
    return problem


def retry_after_s(response: ClientResponse) -> int:
    """The ``Retry-After`` header as whole seconds; it must be there and positive."""
    value = response.headers.get("Retry-After", "")
    assert value.isdigit(), f"Retry-After {value!r}"
    assert int(value) > 0
    return int(value)


def set_draining(client: TestClient) -> None:
    """What SIGTERM does first (bridge.server): readiness fails, new events get 503."""
    client.app[BRIDGE].lifecycle.drain(float("inf"))

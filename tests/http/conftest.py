"""HTTP-level fixtures: the real app on aiohttp's test server, with a fake publisher.

Also the small helpers the HTTP tests share: posting a body as Altinn does,
checking a problem+json answer, reading the bridge's metrics and the records
the fake publisher got. Expected values are derived from the fixtures and the
documented contract (README), never from the code under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from bridge.app import create_app
from bridge.config import Settings
from bridge.errors import PublishError
from bridge.publisher import Delivery
from bridge.routing import Headers
from bridge.state import BRIDGE
from tests.conftest import (
    ALTINN_CONTENT_TYPE,
    FIXTURES,
    VALID,
    VALIDATION_FIXTURE,
    FakePublisher,
    Record,
    make_settings,
)

MakeClient = Callable[..., Awaitable[TestClient]]

EVENTS_PATH = "/api/v1/events"
#: Every problem ``type`` starts with this (README, "Answers on POST /api/v1/events").
PROBLEM_TYPE = "urn:altinn-kafka-bridge:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"
#: The record ``content-type`` header of a published event (README, record contract).
RECORD_CONTENT_TYPE = b"application/cloudevents+json; charset=utf-8"
CORRESPONDENCE_PREFIX = "no.altinn.correspondence."
DEFAULT_PREFIX = "altinn.correspondence"
UNKNOWN_TOPIC = "altinn.correspondence.unknown"
DEADLETTER_TOPIC = "altinn.correspondence.deadletter"

#: Every fixture that is a correspondence event (all valid ones but the handshake).
VALID_EVENTS = [p for p in VALID if p != VALIDATION_FIXTURE]
UNKNOWN_TYPE_FIXTURE = FIXTURES / "valid" / "24-future-unknown-type.json"
#: The 18 known type names, one per fixture 01-18 (fixtures/altinn-events/README.md).
KNOWN_TYPE_NAMES = frozenset(p.stem.split("-", 1)[1] for p in VALID if int(p.stem[:2]) <= 18)
#: Every value the events metric's ``type`` label may take (README, Metrics).
TYPE_LABELS = KNOWN_TYPE_NAMES | {"validatesubscription", "other"}


def valid_fixture(stem: str) -> Path:
    """The valid fixture file ``<stem>.json``, e.g. ``06-correspondencepublished``."""
    path = FIXTURES / "valid" / f"{stem}.json"
    assert path.is_file(), path
    return path


def fixture_ids(paths: list[Path]) -> list[str]:
    """Test ids for parametrising over fixture files: their stems."""
    return [p.stem for p in paths]


def body_bytes(body: bytes | Path) -> bytes:
    """``body`` itself, or the bytes of the fixture file it names, exactly as on disk."""
    return body.read_bytes() if isinstance(body, Path) else body


def attributes(body: bytes | Path) -> dict[str, Any]:
    """The JSON object in ``body`` (bytes or a fixture file)."""
    parsed = orjson.loads(body_bytes(body))
    assert isinstance(parsed, dict)
    return parsed


def with_attributes(path: Path, **changes: object) -> bytes:
    """The fixture at ``path`` re-encoded with ``changes``; a ``None`` value drops the attribute."""
    attrs = attributes(path)
    for name, value in changes.items():
        if value is None:
            attrs.pop(name, None)
        else:
            attrs[name] = value
    return orjson.dumps(attrs)


def type_name(event_type: str) -> str:
    """The lower-case name after ``no.altinn.correspondence.``."""
    return event_type.lower().removeprefix(CORRESPONDENCE_PREFIX)


def type_label(event_type: str) -> str:
    """The documented metric label of ``event_type``: its known name, else ``other``."""
    name = type_name(event_type)
    return name if name in KNOWN_TYPE_NAMES else "other"


def default_topic(event_type: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Documented default topic: ``<prefix>.<name>`` for known types, ``<prefix>.unknown`` otherwise."""
    name = type_name(event_type)
    return f"{prefix}.{name}" if name in KNOWN_TYPE_NAMES else f"{prefix}.unknown"


# --- requests and answers ------------------------------------------------------


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


async def problem_answer(response: ClientResponse, status: int, slug: str) -> dict[str, Any]:
    """The RFC 9457 body of a problem answer; checks its media type and required members."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == PROBLEM_CONTENT_TYPE, text
    body = orjson.loads(text)
    assert body["type"] == PROBLEM_TYPE + slug, body
    assert body["status"] == status, body
    assert isinstance(body["title"], str), body
    assert body["title"], body
    assert isinstance(body["detail"], str), body
    assert body["detail"], body
    return body


def retry_after_s(response: ClientResponse) -> int:
    """The ``Retry-After`` header as whole seconds; it must be there and positive."""
    value = response.headers.get("Retry-After", "")
    assert value.isdigit(), f"Retry-After {value!r}"
    assert int(value) > 0
    return int(value)


def assert_event_record(record: Record, body: bytes, topic: str) -> None:
    """``record`` is ``body`` published per the record contract: topic, key, value, headers."""
    attrs = attributes(body)
    assert record.topic == topic
    assert record.key == attrs["resourceinstance"].encode("utf-8")
    assert record.value == body
    expected = {
        "content-type": RECORD_CONTENT_TYPE,
        "ce_id": attrs["id"].encode(),
        "ce_type": attrs["type"].encode(),
        "ce_source": attrs["source"].encode(),
        "ce_specversion": attrs["specversion"].encode(),
    }
    if "time" in attrs:
        expected["ce_time"] = attrs["time"].encode()
    names = [name for name, _ in record.headers]
    assert len(names) == len(set(names)), names
    assert dict(record.headers) == expected


def set_draining(client: TestClient) -> None:
    """What SIGTERM does first (bridge.server): readiness fails, new events get 503."""
    client.app[BRIDGE].readiness.draining = True


# --- metrics -------------------------------------------------------------------


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (yet)."""
    return registry.get_sample_value(name, labels) or 0.0


def event_counts(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """Non-zero ``altinn_bridge_events_total`` series as ``(outcome, type) -> count``."""
    counts = {}
    for labels, value in series(registry, "altinn_bridge_events_total").items():
        named = dict(labels)
        if value:
            counts[named["outcome"], named["type"]] = value
    return counts


def series(registry: CollectorRegistry, sample_name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every label set of ``sample_name`` (e.g. ``..._count`` of a histogram) with its value."""
    return {
        frozenset(s.labels.items()): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == sample_name
    }


# --- a fake publisher that also reports concurrency ------------------------------


@dataclass
class TrackingPublisher(FakePublisher):
    """:class:`FakePublisher` that counts concurrent publishes and can hold start and check.

    ``start_gate`` keeps ``start`` waiting until it is set; ``check_delay_s``
    makes each broker check take that long, bounded like the real adapter's by
    its ``timeout_s``.
    """

    start_gate: asyncio.Event | None = None
    check_delay_s: float = 0.0
    publishing: int = 0
    max_publishing: int = 0
    checking: int = 0
    max_checking: int = 0

    async def start(self) -> None:
        if self.start_gate is not None:
            await self.start_gate.wait()
        await super().start()

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> Delivery:
        self.publishing += 1
        self.max_publishing = max(self.max_publishing, self.publishing)
        try:
            return await super().publish(topic, key, value, headers)
        finally:
            self.publishing -= 1

    async def check(self, timeout_s: float) -> None:
        self.checking += 1
        self.max_checking = max(self.max_checking, self.checking)
        try:
            await asyncio.sleep(min(self.check_delay_s, timeout_s))
            if self.check_delay_s > timeout_s:
                self.checks += 1
                raise PublishError("timeout", f"no broker answered within {timeout_s:g} s (fake)")
            await super().check(timeout_s)
        finally:
            self.checking -= 1


@pytest.fixture
def fake_publisher() -> TrackingPublisher:
    return TrackingPublisher()


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
            if app[BRIDGE].readiness.producer_started:
                break
            await asyncio.sleep(0.01)
        return client

    return make

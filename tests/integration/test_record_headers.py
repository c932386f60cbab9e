"""Record headers on a real broker, and the dedupe recovery scan that reads records back.

By default a structured-mode record carries only ``content-type`` (every CloudEvents SDK's
auto-detecting reader then takes it for structured mode; tests/integration/test_sdk_consumers.py);
``BRIDGE_RECORD_CE_HEADERS=on`` adds the ``ce_`` headers. The start-up scan that repairs the
crash gap (an event in Kafka without its dedupe state record) must find events in both shapes,
and in binary mode: it takes ``source`` and ``id`` from the value when there are no headers.
"""

from __future__ import annotations

import uuid

import orjson
import pytest
from confluent_kafka import Producer

from bridge.dedupe import dedupe_key
from bridge.events import Event, parse_event
from bridge.routing import Router
from devtools.show_topic import read_topics
from tests.support.broker import DEDUPE_TOPIC
from tests.support.events import ALTINN_CONTENT_TYPE, RECORD_CONTENT_TYPE, valid_fixture
from tests.support.http import EVENTS_PATH
from tests.support.kafka import records_with_ce_id
from tests.support.settings import make_settings
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.integration

TOPIC = "altinn.correspondence.correspondencereceiverread"
TEMPLATE = orjson.loads(valid_fixture("09-correspondencereceiverread").read_bytes())


def _event() -> dict[str, object]:
    return {**TEMPLATE, "id": str(uuid.uuid4()), "resourceinstance": str(uuid.uuid4())}


async def _post(http, url: str, event: dict[str, object]) -> dict[str, object]:
    headers = {"Content-Type": ALTINN_CONTENT_TYPE}
    async with http.post(url + EVENTS_PATH, data=orjson.dumps(event), headers=headers) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, object] = orjson.loads(await response.read())
        return answer


def _state_records(bootstrap: str, event: dict[str, object]) -> list[dict[str, object]]:
    key = dedupe_key(str(event["source"]), str(event["id"])).hex().encode()
    return [r for r in read_topics(bootstrap, [DEDUPE_TOPIC]) if r["key"] == key]


async def test_structured_records_carry_ce_headers_only_when_asked(kafka_bootstrap, start_bridge, http):
    plain, with_headers = _event(), _event()
    default = start_bridge(kafka_bootstrap)
    asked = start_bridge(kafka_bootstrap, BRIDGE_RECORD_CE_HEADERS="on")
    await wait_for_status(http, default.url + "/readyz", 200)
    await wait_for_status(http, asked.url + "/readyz", 200)
    assert (await _post(http, default.url, plain))["outcome"] == "published"
    assert (await _post(http, asked.url, with_headers))["outcome"] == "published"

    (record,) = records_with_ce_id(kafka_bootstrap, [TOPIC], str(plain["id"]))
    assert record["headers"] == {"content-type": RECORD_CONTENT_TYPE}
    assert orjson.loads(record["value"]) == plain
    (record,) = records_with_ce_id(kafka_bootstrap, [TOPIC], str(with_headers["id"]))
    assert record["headers"] == {
        "content-type": RECORD_CONTENT_TYPE,
        "ce_specversion": b"1.0",
        "ce_id": str(with_headers["id"]).encode(),
        "ce_source": str(with_headers["source"]).encode(),
        "ce_type": str(with_headers["type"]).encode(),
        "ce_time": str(with_headers["time"]).encode(),
    }
    assert default.terminate() == 0
    assert asked.terminate() == 0


def _write_as_the_bridge_does(bootstrap: str, event: dict[str, object], partition: int, **env: str) -> None:
    """``event`` in Kafka exactly as a bridge configured with ``env`` writes it, but no state record.

    The crash gap: Kafka acknowledged the event, the bridge died before recording it.
    """
    settings = make_settings(**env)
    parsed = parse_event(orjson.dumps(event))
    assert isinstance(parsed, Event)
    route = Router(settings.topics, settings.record_mode).route(parsed)
    assert route.topic == TOPIC
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(
        route.topic, key=route.key, value=route.value, partition=partition, headers=route.headers
    )
    assert producer.flush(10) == 0
    assert _state_records(bootstrap, event) == []


async def test_start_up_finds_unrecorded_events_in_every_record_shape(kafka_bootstrap, start_bridge, http):
    shapes = {
        "structured, content-type only (the default)": {},
        "structured with ce_ headers": {"BRIDGE_RECORD_CE_HEADERS": "on"},
        "binary": {"BRIDGE_RECORD_MODE": "binary"},
    }
    orphans = {}
    for partition, (shape, env) in enumerate(shapes.items()):
        orphans[shape] = _event()
        _write_as_the_bridge_does(kafka_bootstrap, orphans[shape], partition, **env)

    bridge = start_bridge(kafka_bootstrap)
    await wait_for_status(http, bridge.url + "/readyz", 200)
    for shape, orphan in orphans.items():
        answer = await _post(http, bridge.url, orphan)  # the sender's retry
        assert answer["outcome"] == "duplicate", shape
        assert len(records_with_ce_id(kafka_bootstrap, [TOPIC], str(orphan["id"]))) == 1, shape
        # Written back, so other replicas and the next start know it without the scan.
        assert len(_state_records(kafka_bootstrap, orphan)) == 1, shape
    assert bridge.terminate() == 0
    loaded = next(
        orjson.loads(line) for line in bridge.log().splitlines() if '"event":"dedupe window loaded"' in line
    )
    assert loaded["recovered"] >= len(shapes)

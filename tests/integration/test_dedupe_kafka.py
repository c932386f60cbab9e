"""Dedupe kept in Kafka: survives restarts, is shared by replicas, repairs the crash gap.

Real bridge processes on a real broker; what landed is read back with
confluent-kafka, and the state topic with it too.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from confluent_kafka import Producer

from bridge.dedupe import Seen, dedupe_key
from devtools.show_topic import read_topics
from tests.support.broker import DEDUPE_TOPIC
from tests.support.events import ALTINN_CONTENT_TYPE, VALID
from tests.support.http import EVENTS_PATH
from tests.support.kafka import records_with_ce_id
from tests.support.waiting import polled, wait_for_status

pytestmark = pytest.mark.integration

PUBLISHED_TOPIC = "altinn.correspondence.correspondencepublished"
TEMPLATE = orjson.loads(VALID[5].read_bytes())  # correspondencepublished


def _event(**changes: object) -> dict[str, object]:
    return {**TEMPLATE, "id": str(uuid.uuid4()), "resourceinstance": str(uuid.uuid4()), **changes}


async def _post(http, url: str, event: dict[str, object]) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": ALTINN_CONTENT_TYPE}
    async with http.post(url + EVENTS_PATH, data=orjson.dumps(event), headers=headers) as response:
        return response.status, orjson.loads(await response.read())


def _records_with_id(bootstrap: str, event_id: str) -> list[dict[str, object]]:
    return records_with_ce_id(bootstrap, [PUBLISHED_TOPIC], event_id)


def _state_records(bootstrap: str, event: dict[str, object]) -> list[dict[str, object]]:
    key = dedupe_key(str(event["source"]), str(event["id"])).hex().encode()
    return [r for r in read_topics(bootstrap, [DEDUPE_TOPIC]) if r["key"] == key]


async def _metric(http, url: str, name: str) -> float:
    async with http.get(url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith((name + " ", name + "{")):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed")


async def test_a_restarted_bridge_answers_duplicate_with_the_first_location(
    kafka_bootstrap, start_bridge, http
):
    event = _event()
    first = start_bridge(kafka_bootstrap)
    await wait_for_status(http, first.url + "/readyz", 200)
    status, answer = await _post(http, first.url, event)
    assert (status, answer["outcome"]) == (200, "published")
    assert first.terminate() == 0

    (state,) = _state_records(kafka_bootstrap, event)
    seen = Seen.decode(state["value"])
    assert (seen.topic, seen.partition, seen.offset) == (
        answer["topic"],
        answer["partition"],
        answer["offset"],
    )
    assert orjson.loads(state["value"])["id"] == event["id"]

    second = start_bridge(kafka_bootstrap)
    await wait_for_status(http, second.url + "/readyz", 200)
    status, again = await _post(http, second.url, event)
    assert status == 200
    assert again["outcome"] == "duplicate"
    assert (again["topic"], again["partition"], again["offset"]) == (
        answer["topic"],
        answer["partition"],
        answer["offset"],
    )
    assert len(_records_with_id(kafka_bootstrap, str(event["id"]))) == 1
    assert await _metric(http, second.url, 'altinn_bridge_redeliveries_total{previous="published"}') == 1
    assert second.terminate() == 0


async def test_replicas_learn_each_others_publishes(kafka_bootstrap, start_bridge, http):
    one = start_bridge(kafka_bootstrap)
    two = start_bridge(kafka_bootstrap)
    await wait_for_status(http, one.url + "/readyz", 200)
    await wait_for_status(http, two.url + "/readyz", 200)
    entries_before = await _metric(http, two.url, "altinn_bridge_dedupe_entries")

    event = _event()
    status, answer = await _post(http, one.url, event)
    assert (status, answer["outcome"]) == (200, "published")

    # Replica two learns it from the state topic, without any request of its own.
    await polled(
        lambda: _metric(http, two.url, "altinn_bridge_dedupe_entries"),
        lambda entries: entries >= entries_before + 1,
        what="replica two learning the key",
        timeout_s=10,
        every_s=0.05,
    )
    status, again = await _post(http, two.url, event)
    assert (status, again["outcome"]) == (200, "duplicate")
    assert len(_records_with_id(kafka_bootstrap, str(event["id"]))) == 1
    assert one.terminate() == 0
    assert two.terminate() == 0


def _produce_orphan(bootstrap: str, partition: int) -> dict[str, object]:
    """An event written with ``ce_`` headers, as ``BRIDGE_RECORD_CE_HEADERS=on`` does, but with no state
    record (the other shapes: tests/integration/test_record_headers.py)."""
    orphan = _event()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(
        PUBLISHED_TOPIC,
        key=str(orphan["resourceinstance"]).encode(),
        value=orjson.dumps(orphan),
        partition=partition,
        headers=[("ce_id", str(orphan["id"]).encode()), ("ce_source", str(orphan["source"]).encode())],
    )
    assert producer.flush(10) == 0
    assert _state_records(bootstrap, orphan) == []
    return orphan


async def test_events_in_kafka_without_state_record_are_found_at_startup(kafka_bootstrap, start_bridge, http):
    """The crash gap: Kafka acked an event, the bridge died before writing its state record.

    One such event sits between recorded ones (partition 0: other requests in
    flight completed after it), one after the last recorded one (partition 1).
    """
    warm = start_bridge(kafka_bootstrap)
    await wait_for_status(http, warm.url + "/readyz", 200)
    in_gap = _produce_orphan(kafka_bootstrap, partition=0)
    for _ in range(60):  # until the bridge has recorded an event after it on partition 0
        status, answer = await _post(http, warm.url, _event())
        assert status == 200
        if answer["partition"] == 0:
            break
    else:
        pytest.fail("no event landed on partition 0")
    assert warm.terminate() == 0
    at_tail = _produce_orphan(kafka_bootstrap, partition=1)

    bridge = start_bridge(kafka_bootstrap)
    await wait_for_status(http, bridge.url + "/readyz", 200)
    for orphan in (in_gap, at_tail):
        status, answer = await _post(http, bridge.url, orphan)  # the sender's retry
        assert (status, answer["outcome"]) == (200, "duplicate"), orphan["id"]
        assert len(_records_with_id(kafka_bootstrap, str(orphan["id"]))) == 1
        # Written back, so other replicas and the next start know it without the scan.
        assert len(_state_records(kafka_bootstrap, orphan)) == 1
    assert bridge.terminate() == 0
    loaded = next(
        orjson.loads(line) for line in bridge.log().splitlines() if '"event":"dedupe window loaded"' in line
    )
    assert loaded["recovered"] >= 2


async def test_missing_state_topic_keeps_the_bridge_unready_and_says_why(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(kafka_bootstrap, BRIDGE_DEDUPE_TOPIC="no-such-dedupe-topic")
    await wait_for_status(http, bridge.url + "/healthz", 200)
    await asyncio.sleep(1.0)
    async with http.get(bridge.url + "/readyz") as response:
        assert response.status == 503
        assert "dedupe" in (await response.json())["failing"]
    status, answer = await _post(http, bridge.url, _event())
    assert status == 503
    assert answer["type"].endswith(":not-ready")
    assert bridge.terminate() == 0
    log = bridge.log()
    assert "no-such-dedupe-topic" in log
    assert "cleanup.policy=compact" in log
    assert "no-such-dedupe-topic" not in {r["topic"] for r in read_topics(kafka_bootstrap, [PUBLISHED_TOPIC])}


async def test_batch_and_binary_records_land(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(kafka_bootstrap, BRIDGE_RECORD_MODE="binary")
    await wait_for_status(http, bridge.url + "/readyz", 200)
    events = [_event() for _ in range(200)]
    headers = {"Content-Type": "application/cloudevents-batch+json"}
    async with http.post(bridge.url + EVENTS_PATH, data=orjson.dumps(events), headers=headers) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["outcomes"] == {"published": 200}

    landed = {
        r["headers"]["ce_id"].decode(): r
        for r in read_topics(kafka_bootstrap, [PUBLISHED_TOPIC])
        if r["headers"].get("ce_id", b"").decode() in {e["id"] for e in events}
    }
    assert len(landed) == 200
    for event in events:
        record = landed[str(event["id"])]
        assert record["value"] in (b"", None)  # binary mode: Altinn events carry no data
        assert record["key"] == str(event["resourceinstance"]).encode()
        for name in ("source", "type", "time", "resource", "resourceinstance", "subject", "specversion"):
            assert record["headers"][f"ce_{name}"] == str(event[name]).encode(), name
    assert bridge.terminate() == 0

"""Post events as Altinn does to a real bridge process; read Kafka back with confluent-kafka."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

import orjson
import pytest

from devtools.broker import provision
from devtools.show_topic import read_topics
from tests.support.broker import BRIDGE_SETTINGS, DEFAULT_TOPICS
from tests.support.events import ALTINN_CONTENT_TYPE, INVALID, VALID, VALIDATION_FIXTURE
from tests.support.http import EVENTS_PATH
from tests.support.kafka import record_event_id
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.integration


def _expected_topic(event: dict[str, object]) -> str:
    name = str(event["type"]).lower().removeprefix("no.altinn.correspondence.")
    topic = f"altinn.correspondence.{name}"
    return topic if topic in DEFAULT_TOPICS else "altinn.correspondence.unknown"


async def _post(http, url: str, body: bytes, content_type: str = ALTINN_CONTENT_TYPE):
    async with http.post(url + EVENTS_PATH, data=body, headers={"Content-Type": content_type}) as response:
        return response.status, await response.read()


async def test_every_valid_fixture_lands_byte_for_byte(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(kafka_bootstrap)
    await wait_for_status(http, bridge.url + "/readyz", 200)

    answers = {}
    for path in VALID:
        status, body = await _post(http, bridge.url, path.read_bytes())
        assert status == 200, (path.name, body)
        answers[path.name] = orjson.loads(body)

    records = read_topics(kafka_bootstrap, DEFAULT_TOPICS)
    by_id = {}
    for record in records:
        by_id.setdefault(record_event_id(record), []).append(record)

    for path in VALID:
        if path == VALIDATION_FIXTURE:
            continue
        raw = path.read_bytes()
        event = orjson.loads(raw)
        found = by_id.get(event["id"], [])
        assert len(found) == 1, f"{path.name}: expected exactly one record, found {len(found)}"
        record = found[0]
        assert record["topic"] == _expected_topic(event), path.name
        assert record["value"] == raw, path.name
        assert record["key"] == event["resourceinstance"].encode()
        # Only content-type by default: every CloudEvents SDK then reads it as structured mode.
        assert record["headers"] == {"content-type": b"application/cloudevents+json; charset=utf-8"}
        # What the bridge answered is where the record really is.
        answer = answers[path.name]
        assert (answer["topic"], answer["partition"], answer["offset"]) == (
            record["topic"],
            record["partition"],
            record["offset"],
        )

    validation_id = orjson.loads(VALIDATION_FIXTURE.read_bytes())["id"].encode()
    assert answers[VALIDATION_FIXTURE.name]["outcome"] == "validation"
    assert not [r for r in records if validation_id in r["value"]], "validation event was published"

    assert bridge.terminate() == 0


async def test_invalid_bodies_land_in_the_deadletter_topic(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(kafka_bootstrap)
    await wait_for_status(http, bridge.url + "/readyz", 200)
    # The topic is shared with earlier tests: this test's records are those received from now on
    # (dlq_received_at is RFC 3339 in UTC, so its text orders as its time does).
    since = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z").encode()

    reasons = {}
    for path in INVALID:
        status, body = await _post(http, bridge.url, path.read_bytes())
        assert status == 200, (path.name, body)
        answer = orjson.loads(body)
        assert answer["outcome"] == "dead_lettered"
        reasons[path.read_bytes()] = answer["reason"].encode()

    records = [
        r
        for r in read_topics(kafka_bootstrap, ["altinn.correspondence.deadletter"])
        if r["headers"]["dlq_received_at"] >= since
    ]
    assert sorted(r["value"] for r in records) == sorted(reasons)
    for record in records:
        assert record["headers"]["dlq_reason"] == reasons[record["value"]]
        assert record["headers"]["content-type"] == ALTINN_CONTENT_TYPE.encode()
        assert record["headers"]["dlq_received_at"].endswith(b"Z")
    assert bridge.terminate() == 0


async def test_broker_outage_503_then_recovery_without_restart(durable_broker, start_bridge, http):
    """Stop the broker: 503 within the publish timeout, /readyz 503, and no event
    answered 2xx is missing from Kafka. Start it again: the same process recovers."""
    publish_timeout_s = 2.0
    bridge = start_bridge(
        durable_broker.bootstrap,
        BRIDGE_PUBLISH_TIMEOUT_S=str(publish_timeout_s),
        BRIDGE_READY_CHECK_INTERVAL_S="0.2",
        BRIDGE_READY_CHECK_TIMEOUT_S="1",
    )
    await wait_for_status(http, bridge.url + "/readyz", 200)
    template = orjson.loads(VALID[5].read_bytes())  # correspondencepublished

    acknowledged: set[str] = set()
    refused: set[str] = set()

    async def post_one(n: int) -> int:
        event = {**template, "id": f"outage-{n:04d}", "resourceinstance": f"ri-{n:04d}"}
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, body = await _post(http, bridge.url, orjson.dumps(event))
        took = loop.time() - started
        if status == 200:
            acknowledged.add(event["id"])
        else:
            assert status == 503, body
            assert orjson.loads(body)["type"].endswith("kafka-unavailable")
            # Bounded by the publish timeout (plus scheduling slack), far from Altinn's 45 s.
            assert took < publish_timeout_s + 3.0, took
            refused.add(event["id"])
        return status

    assert {await post_one(n) for n in range(10)} == {200}

    durable_broker.stop()
    statuses = [await post_one(n) for n in range(10, 15)]
    assert statuses == [503] * 5
    await wait_for_status(http, bridge.url + "/readyz", 503, timeout_s=10)
    async with http.get(bridge.url + "/readyz") as response:
        assert "broker" in (await response.json())["failing"]
    async with http.get(bridge.url + "/healthz") as response:
        assert response.status == 200  # liveness never depends on Kafka

    durable_broker.start()
    await wait_for_status(http, bridge.url + "/readyz", 200, timeout_s=30)
    # The producer reconnects on its own; allow it a few attempts at most.
    recovered = [await post_one(n) for n in range(15, 35)]
    assert recovered[-10:] == [200] * 10, recovered

    landed = {
        record_event_id(r)
        for r in read_topics(durable_broker.bootstrap, ["altinn.correspondence.correspondencepublished"])
    }
    assert acknowledged <= landed, f"answered 2xx but not in Kafka: {sorted(acknowledged - landed)}"
    assert bridge.process is not None
    assert bridge.process.poll() is None, "bridge restarted or died"
    assert bridge.terminate() == 0


async def test_starts_without_kafka_and_connects_when_it_appears(own_broker, start_bridge, http):
    port = own_broker.port
    own_broker.stop()
    bridge = start_bridge(f"127.0.0.1:{port}")
    await wait_for_status(http, bridge.url + "/healthz", 200)
    async with http.get(bridge.url + "/readyz") as response:
        assert response.status == 503
        assert "producer" in (await response.json())["failing"]
    status, body = await _post(http, bridge.url, VALID[0].read_bytes())
    assert status == 503, body

    own_broker.start()
    await provision(own_broker.bootstrap, BRIDGE_SETTINGS)
    await wait_for_status(http, bridge.url + "/readyz", 200, timeout_s=30)
    status, body = await _post(http, bridge.url, VALID[0].read_bytes())
    assert status == 200, body
    assert bridge.terminate() == 0


async def test_sigterm_drains_finishes_in_flight_and_exits_zero(own_broker, start_bridge, http):
    bridge = start_bridge(
        own_broker.bootstrap,
        BRIDGE_SHUTDOWN_DRAIN_S="1.5",
        BRIDGE_SHUTDOWN_GRACE_S="15",
        BRIDGE_PUBLISH_TIMEOUT_S="10",
    )
    await wait_for_status(http, bridge.url + "/readyz", 200)
    template = orjson.loads(VALID[5].read_bytes())
    events = [{**template, "id": f"inflight-{n}"} for n in range(5)]

    own_broker.pause()
    try:
        in_flight = [asyncio.create_task(_post(http, bridge.url, orjson.dumps(e))) for e in events]
        await asyncio.sleep(0.5)
        assert not any(t.done() for t in in_flight), "publishes should be waiting on the paused broker"
        assert bridge.process is not None
        bridge.process.terminate()  # SIGTERM
        await wait_for_status(http, bridge.url + "/readyz", 503, timeout_s=1.0)
        status, body = await _post(http, bridge.url, orjson.dumps({**template, "id": "during-drain"}))
        assert status == 503
        assert orjson.loads(body)["type"].endswith("shutting-down")
    finally:
        own_broker.resume()

    results = await asyncio.gather(*in_flight)
    assert [status for status, _ in results] == [200] * 5
    assert await asyncio.to_thread(bridge.process.wait, 15) == 0
    landed = {
        record_event_id(r)
        for r in read_topics(own_broker.bootstrap, ["altinn.correspondence.correspondencepublished"])
    }
    assert {e["id"] for e in events} <= landed
    assert "during-drain" not in landed
    log = bridge.log()
    assert '"event":"draining"' in log
    assert '"event":"stopped"' in log


def test_invalid_configuration_stops_startup_listing_every_problem():
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "serve"],
        env={"PATH": "/usr/bin:/bin", "BRIDGE_HTTP_PORT": "http", "BRIDGE_INVALID_EVENT_POLICY": "drop"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "BRIDGE_HTTP_PORT",
        "BRIDGE_INVALID_EVENT_POLICY",
        "BRIDGE_AUTH_TOKENS",
    ):
        assert name in result.stderr
    assert "4 problem(s)" in result.stderr


async def test_fifty_concurrent_events_all_land_and_each_logs_one_line(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(kafka_bootstrap)
    await wait_for_status(http, bridge.url + "/readyz", 200)
    template = orjson.loads(VALID[8].read_bytes())  # correspondencereceiverread
    events = [{**template, "id": f"concurrent-{n:03d}", "resourceinstance": f"c-{n:03d}"} for n in range(50)]

    results = await asyncio.gather(*(_post(http, bridge.url, orjson.dumps(e)) for e in events))
    assert [status for status, _ in results] == [200] * 50

    landed = read_topics(kafka_bootstrap, ["altinn.correspondence.correspondencereceiverread"])
    by_id = {record_event_id(r): r for r in landed}
    for event in events:
        assert by_id[event["id"]]["key"] == event["resourceinstance"].encode()

    assert bridge.terminate() == 0
    lines = [orjson.loads(line) for line in bridge.log().splitlines() if line.startswith("{")]
    started = next(line for line in lines if line["event"] == "started")
    assert started["config"]["KAFKA_BOOTSTRAP_SERVERS"] == [kafka_bootstrap]
    requests = {
        line["event_id"]: line
        for line in lines
        if line["event"] == "request" and line.get("event_id", "").startswith("concurrent-")
    }
    assert set(requests) == {e["id"] for e in events}, "one log line per request"
    for event_id, line in requests.items():
        record = by_id[event_id]
        assert line["outcome"] == "published"
        assert line["type"] == template["type"]
        assert (line["topic"], line["partition"], line["offset"]) == (
            record["topic"],
            record["partition"],
            record["offset"],
        )
        assert line["status"] == 200
        assert line["duration_ms"] > 0

"""The official CloudEvents SDKs read the bridge's records whole, with their auto-detecting readers.

Every valid fixture is pushed through a real bridge, read back off the broker with
confluent-kafka, and handed to the SDKs as a consumer would: Python ``cloudevents`` 2.2.0's
``from_kafka_event`` and the npm ``cloudevents`` package's ``Kafka.toEvent`` (Node, through
tools/node/read-cloudevents.mjs). Both must return every attribute Altinn sent, in both record
modes. With ``BRIDGE_RECORD_CE_HEADERS=on`` the Python reader loses the Altinn attributes,
which is why that is not the default (docs/consumers.md).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event, from_structured_event

from devtools.show_topic import read_topics
from tests.support.broker import DEFAULT_TOPICS
from tests.support.events import ALTINN_CONTENT_TYPE, VALID_EVENTS, attributes
from tests.support.http import EVENTS_PATH
from tests.support.kafka import record_event_id
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.integration

NODE_TOOLS = Path(__file__).resolve().parents[2] / "tools" / "node"
JS_READER = NODE_TOOLS / "read-cloudevents.mjs"
#: The Altinn attributes a reader that takes a structured record for binary mode loses.
ALTINN_ATTRIBUTES = ("resource", "resourceinstance", "subject", "alternativesubject")


async def _publish_fixtures(http, url: str) -> dict[str, dict[str, Any]]:
    """Every valid fixture with an id of its own, pushed to the bridge; the events by id."""
    marker = uuid.uuid4().hex[:8]
    events = {}
    for path in VALID_EVENTS:
        event = {**attributes(path), "id": f"{attributes(path)['id']}-sdk-{marker}"}
        headers = {"Content-Type": ALTINN_CONTENT_TYPE}
        async with http.post(url + EVENTS_PATH, data=orjson.dumps(event), headers=headers) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["outcome"] == "published"
        events[event["id"]] = event
    return events


def _records(bootstrap: str, events: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    records = [r for r in read_topics(bootstrap, DEFAULT_TOPICS) if record_event_id(r) in events]
    assert sorted(record_event_id(r) for r in records) == sorted(events)
    return records


def _datetime(rfc3339: str) -> datetime:
    """``time`` as the Python SDK gives it: a datetime, fractions cut to microseconds."""
    cut = re.sub(r"(\.\d{6})\d+", r"\1", rfc3339)
    return datetime.fromisoformat(cut)


def _js_time(rfc3339: str) -> str:
    """``time`` as the JS SDK gives it: ``Date.toISOString()``, UTC, in milliseconds."""
    moment = _datetime(rfc3339).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _python_reads(record: dict[str, Any]) -> dict[str, Any]:
    message = KafkaMessage(headers=record["headers"], key=record["key"], value=record["value"])
    return from_kafka_event(message).get_attributes()


def _js_reads(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (NODE_TOOLS / "node_modules" / "cloudevents").is_dir():
        pytest.fail("node and tools/node are needed: `make tools` (make test runs it)", pytrace=False)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    given = [
        {
            "key": None if r["key"] is None else b64(r["key"]),
            "value": b64(r["value"] or b""),
            "headers": {name: b64(value) for name, value in r["headers"].items()},
        }
        for r in records
    ]
    result = subprocess.run(
        [node, str(JS_READER)], input=json.dumps(given).encode(), capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    answers: list[dict[str, Any]] = json.loads(result.stdout)
    return answers


@pytest.mark.parametrize("mode", ["structured", "binary"])
async def test_python_and_js_sdks_return_every_altinn_attribute(kafka_bootstrap, start_bridge, http, mode):
    bridge = start_bridge(kafka_bootstrap, BRIDGE_RECORD_MODE=mode)
    await wait_for_status(http, bridge.url + "/readyz", 200)
    events = await _publish_fixtures(http, bridge.url)
    records = _records(kafka_bootstrap, events)
    assert bridge.terminate() == 0

    for record in records:
        sent = events[record_event_id(record)]
        key = sent["resourceinstance"]
        # Python: cloudevents 2.2.0, cloudevents.core.bindings.kafka.from_kafka_event.
        read = _python_reads(record)
        assert read == {**sent, "time": _datetime(sent["time"]), "partitionkey": key}, sent["id"]
    for record, answer in zip(records, _js_reads(records), strict=True):
        sent = events[record_event_id(record)]
        # JS: npm cloudevents 10.0.0, Kafka.toEvent.
        assert "event" in answer, answer
        assert answer["event"] == {
            **sent,
            "time": _js_time(sent["time"]),
            "partitionkey": sent["resourceinstance"],
        }


async def test_with_ce_headers_python_auto_detection_loses_the_altinn_attributes(
    kafka_bootstrap, start_bridge, http
):
    """Why ``BRIDGE_RECORD_CE_HEADERS`` is off by default: the check above can tell."""
    bridge = start_bridge(kafka_bootstrap, BRIDGE_RECORD_CE_HEADERS="on")
    await wait_for_status(http, bridge.url + "/readyz", 200)
    events = await _publish_fixtures(http, bridge.url)
    records = _records(kafka_bootstrap, events)
    assert bridge.terminate() == 0

    for record in records:
        sent = events[record_event_id(record)]
        assert {"ce_id", "ce_source", "ce_type", "ce_specversion"} <= set(record["headers"])
        auto = _python_reads(record)
        assert not any(name in auto for name in ALTINN_ATTRIBUTES), auto
        # Saying the mode works, and the JS reader goes by content-type either way.
        message = KafkaMessage(headers=record["headers"], key=record["key"], value=record["value"])
        assert from_structured_event(message).get_attributes()["resourceinstance"] == sent["resourceinstance"]
    for record, answer in zip(records, _js_reads(records), strict=True):
        sent = events[record_event_id(record)]
        assert answer["event"]["resourceinstance"] == sent["resourceinstance"]

"""``altinn-bridge redrive`` against the real broker, beside a running bridge.

Each test has a topic prefix (and a KAFKA_CLIENT_ID, hence a redrive consumer group) of its
own, so the session broker's other records do not matter. Events are posted to a bridge
process as Altinn does; records are read back with confluent-kafka (devtools/show_topic.py)
and matched by the event ``id`` in their value. The redrive runs as operators run it: the
console command in a subprocess, its JSON summary on stdout. It is given no
``BRIDGE_AUTH_TOKENS``: a one-shot command serves no HTTP and does not ask for them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.dedupe import dedupe_key
from devtools.broker import create_topics
from devtools.show_topic import read_topics
from tests.support.events import ALTINN_CONTENT_TYPE, INVALID, UNKNOWN_TYPE_FIXTURE, valid_fixture
from tests.support.http import EVENTS_PATH
from tests.support.kafka import record_event_id
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
#: The type of the unknown-type fixture, which gets a route in these tests.
NEW_TYPE = orjson.loads(UNKNOWN_TYPE_FIXTURE.read_bytes())["type"]


class Topics:
    """One test's topics: ``<prefix>.unknown``, ``.deadletter``, ``.dedupe`` and the new route's."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = f"test.redrive.{uuid.uuid4().hex[:10]}"
        self.unknown = f"{self.prefix}.unknown"
        self.deadletter = f"{self.prefix}.deadletter"
        self.dedupe = f"{self.prefix}.dedupe"
        self.replied = f"{self.prefix}.replied"  # where NEW_TYPE is routed once it has a route
        self.published = f"{self.prefix}.correspondencepublished"
        self.client_id = f"redrive-test-{uuid.uuid4().hex[:8]}"

    def bridge_env(self) -> dict[str, str]:
        """What the bridges and the redrive share (the bridge fixture adds the HTTP side)."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",  # Tansu cannot (docs/configuration.md)
            "KAFKA_CLIENT_ID": self.client_id,
            "BRIDGE_TOPIC_PREFIX": self.prefix,
            "BRIDGE_DEDUPE": "kafka",
        }

    def routed_env(self) -> dict[str, str]:
        """After the upgrade: the new type has a route."""
        return {**self.bridge_env(), "BRIDGE_TOPIC_ROUTES": f"{NEW_TYPE}={self.replied}"}

    def ids_in(self, topic: str) -> Counter[str]:
        """How many records of ``topic`` carry each event id (either record mode)."""
        return Counter(
            event_id for r in read_topics(self.bootstrap, [topic]) if (event_id := record_event_id(r))
        )

    def count(self, topic: str) -> int:
        return len(read_topics(self.bootstrap, [topic]))


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    t = Topics(kafka_bootstrap)
    state = {"cleanup.policy": "compact,delete", "retention.ms": str(3 * 86400 * 1000)}
    created = [t.unknown, t.deadletter, t.dedupe, t.replied, t.published]
    asyncio.run(create_topics(kafka_bootstrap, created, 3, {t.dedupe: state}))
    return t


def new_event(fixture: Path = UNKNOWN_TYPE_FIXTURE) -> dict[str, Any]:
    body = orjson.loads(fixture.read_bytes())
    body["id"] = str(uuid.uuid4())
    return body


async def post(http, bridge, body: bytes) -> dict[str, Any]:
    url = bridge.url + EVENTS_PATH
    async with http.post(url, data=body, headers={"Content-Type": ALTINN_CONTENT_TYPE}) as response:
        answer = orjson.loads(await response.read())
        assert response.status == 200, answer
        return answer


async def post_all(http, bridge, events: list[dict[str, Any]], outcome: str) -> None:
    for event in events:
        answer = await post(http, bridge, orjson.dumps(event))
        assert answer["outcome"] == outcome, answer


async def redrive(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    """``altinn-bridge redrive …`` in a subprocess: exit code, JSON summary, stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "KAFKA_"))}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bridge", "redrive", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    print("redrive", *args, "→", result.returncode, result.stdout, result.stderr)  # shown when a test fails
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    return result.returncode, orjson.loads(lines[-1]), result.stderr


async def a_millisecond_between() -> str:
    """An instant (RFC 3339) after every record written so far and before every record written next.

    Record timestamps are whole milliseconds: wait for the clock to pass the next one.
    """
    between_ms = int(time.time() * 1000) + 1
    while time.time() * 1000 < between_ms + 1:
        await asyncio.sleep(0.0005)
    return (
        datetime.fromtimestamp(between_ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


async def test_unknown_types_land_once_in_their_new_route(topics, start_bridge, http):
    """Posted unknown-type events, a route added, redrive run twice: each event once in the new topic.

    A bridge keeps running (without the route) during the redrive; the keys published reach the
    state topic, so a bridge started with the route afterwards takes a repeated push as a duplicate.
    """
    running = start_bridge(topics.bootstrap, **topics.bridge_env())
    await wait_for_status(http, running.url + "/readyz", 200)
    events = [new_event() for _ in range(6)]
    await post_all(http, running, events, "published")
    ids = {e["id"] for e in events}
    assert {i: n for i, n in topics.ids_in(topics.unknown).items() if i in ids} == dict.fromkeys(ids, 1)

    code, first, _ = await redrive(topics.routed_env(), "--from", topics.unknown)
    assert code == 0, first
    assert first["published"] == 6, first
    assert first["published_to"] == {topics.replied: 6}
    assert (first["duplicates"], first["invalid"], first["in_place"]) == (0, 0, 0)
    assert first["group"] == f"{topics.client_id}.redrive.{topics.unknown}"
    assert first["remaining"] == 0

    code, second, _ = await redrive(topics.routed_env(), "--from", topics.unknown)
    assert code == 0, second
    assert (second["read"], second["published"]) == (0, 0), second

    assert topics.ids_in(topics.replied) == dict.fromkeys(ids, 1)
    assert {i: n for i, n in topics.ids_in(topics.unknown).items() if i in ids} == dict.fromkeys(ids, 1)

    # The redrive's keys are in the state topic, for the new route ...
    state = read_topics(topics.bootstrap, [topics.dedupe])
    keys_in_route = {
        r["key"] for r in state if r["key"] and orjson.loads(r["value"])["topic"] == topics.replied
    }
    for event in events:
        assert dedupe_key(event["source"], event["id"]).hex().encode() in keys_in_route
    # ... so a bridge with the route takes Altinn's retry of one of them as a duplicate.
    upgraded = start_bridge(topics.bootstrap, **topics.routed_env())
    await wait_for_status(http, upgraded.url + "/readyz", 200)
    answer = await post(http, upgraded, orjson.dumps(events[0]))
    assert answer["outcome"] == "duplicate", answer
    assert answer["topic"] == topics.replied
    assert topics.ids_in(topics.replied)[events[0]["id"]] == 1

    assert running.terminate() == 0
    assert upgraded.terminate() == 0


async def test_binary_mode_records_are_rebuilt_and_redriven(topics, start_bridge, http):
    binary = {**topics.bridge_env(), "BRIDGE_RECORD_MODE": "binary"}
    running = start_bridge(topics.bootstrap, **binary)
    await wait_for_status(http, running.url + "/readyz", 200)
    events = [new_event() for _ in range(3)]
    await post_all(http, running, events, "published")

    routed = {**topics.routed_env(), "BRIDGE_RECORD_MODE": "binary"}
    code, summary, _ = await redrive(routed, "--from", topics.unknown)
    assert (code, summary["published"], summary["invalid"]) == (0, 3, 0), summary
    records = read_topics(topics.bootstrap, [topics.replied])
    assert sorted(record_event_id(r) for r in records) == sorted(e["id"] for e in events)
    for record in records:  # every attribute back in its header, as the bridge wrote it
        event = next(e for e in events if e["id"] == record_event_id(record))
        assert {k: v for k, v in record["headers"].items() if k.startswith("ce_")} == {
            f"ce_{name}": value.encode() for name, value in event.items()
        }
        assert record["value"] == b""
    assert running.terminate() == 0


async def test_dead_letters_still_invalid_stay_and_are_counted(topics, start_bridge, http):
    running = start_bridge(topics.bootstrap, **topics.bridge_env())
    await wait_for_status(http, running.url + "/readyz", 200)
    reasons: Counter[str] = Counter()
    for path in INVALID:
        answer = await post(http, running, path.read_bytes())
        assert answer["outcome"] == "dead_lettered", (path.name, answer)
        reasons[answer["reason"]] += 1
    # A dead letter that is valid today (as an older version, stricter, might have written it).
    fixed = new_event(valid_fixture("06-correspondencepublished"))
    await asyncio.to_thread(
        _produce,
        topics.bootstrap,
        topics.deadletter,
        orjson.dumps(fixed),
        [("content-type", ALTINN_CONTENT_TYPE.encode()), ("dlq_reason", b"invalid_attribute")],
    )
    before = topics.count(topics.deadletter)
    assert before == len(INVALID) + 1

    code, summary, _ = await redrive(topics.bridge_env(), "--from", topics.deadletter)
    assert code == 0, summary
    assert summary["invalid"] == len(INVALID), summary
    assert summary["invalid_reasons"] == dict(reasons)
    assert summary["published"] == 1
    assert summary["published_to"] == {topics.published: 1}
    # Nothing was dead-lettered again, and the invalid ones are still there.
    assert topics.count(topics.deadletter) == before
    assert topics.ids_in(topics.published) == {fixed["id"]: 1}

    code, again, _ = await redrive(topics.bridge_env(), "--from", topics.deadletter)
    assert code == 0, again
    assert (again["read"], again["invalid"], again["published"]) == (0, 0, 0), again
    assert running.terminate() == 0


def dead_letters(topics: Topics, events: list[dict[str, Any]]) -> None:
    """Events valid today as dead letters (as an older, stricter version might have written them).

    The dedupe window knows nothing of them (it never reads the dead-letter topic), so these
    tests see the redrive's own bookkeeping, whatever the window's rules.
    """
    headers = [("content-type", ALTINN_CONTENT_TYPE.encode()), ("dlq_reason", b"invalid_attribute")]
    for event in events:
        _produce(topics.bootstrap, topics.deadletter, orjson.dumps(event), headers)


PUBLISHED = valid_fixture("06-correspondencepublished")


async def test_dry_run_writes_and_commits_nothing(topics):
    early = [new_event(PUBLISHED) for _ in range(3)]
    late = [new_event(PUBLISHED) for _ in range(2)]
    await asyncio.to_thread(dead_letters, topics, early)
    between = await a_millisecond_between()
    # The last one twice: a run takes the second copy as a duplicate.
    await asyncio.to_thread(dead_letters, topics, [*late, late[0]])
    state_before = topics.count(topics.dedupe)

    code, summary, _ = await redrive(topics.bridge_env(), "--from", topics.deadletter, "--dry-run")
    assert code == 0, summary
    assert summary["dry_run"] is True
    assert (summary["read"], summary["published"], summary["duplicates"]) == (6, 5, 1), summary
    assert summary["published_to"] == {topics.published: 5}
    assert summary["committed"] == {}

    args = ["--from", topics.deadletter, "--dry-run"]
    code, since, _ = await redrive(topics.bridge_env(), *args, "--since", between)
    assert (code, since["before_since"], since["published"], since["duplicates"]) == (0, 3, 2, 1), since
    code, until, _ = await redrive(topics.bridge_env(), *args, "--until", between)
    assert (code, until["read"], until["published"], until["remaining"]) == (0, 3, 3, 3), until

    # Nothing written: no event in its topic, no key in the state topic, no new dead letter.
    assert topics.count(topics.published) == 0
    assert topics.count(topics.dedupe) == state_before
    assert topics.count(topics.deadletter) == 6
    # Nothing committed: a real run still finds every record.
    code, real, _ = await redrive(topics.bridge_env(), "--from", topics.deadletter)
    assert (code, real["published"], real["duplicates"]) == (0, 5, 1), real
    assert topics.ids_in(topics.published) == {e["id"]: 1 for e in early + late}


async def test_an_interrupted_run_continues_where_it_stopped(topics):
    events = [new_event(PUBLISHED) for _ in range(7)]
    await asyncio.to_thread(dead_letters, topics, events)

    runs = []
    for _ in range(4):
        code, summary, stderr = await redrive(
            topics.bridge_env(), "--from", topics.deadletter, "--limit", "3"
        )
        assert code == 0, (summary, stderr)
        runs.append((summary["published"], summary["limit_reached"], summary["remaining"]))
        # Not a terminal: plain progress lines.
        assert f"redrive {topics.deadletter}:" in stderr
        assert "\r" not in stderr
    assert runs == [(3, True, 4), (3, True, 1), (1, False, 0), (0, False, 0)]
    assert topics.ids_in(topics.published) == {e["id"]: 1 for e in events}


async def test_a_missing_topic_exits_1_and_needs_no_server_settings(topics):
    env = {**topics.bridge_env(), "BRIDGE_TLS_CERT_FILE": "/nonexistent/cert.pem"}
    code, summary, stderr = await redrive(env, "--from", f"{topics.prefix}.nothing")
    assert code == 1
    assert "does not exist" in summary["error"]
    assert "altinn-bridge redrive:" in stderr
    assert "BRIDGE_AUTH_TOKENS" not in stderr
    assert "BRIDGE_TLS_CERT_FILE" not in stderr


def _produce(bootstrap: str, topic: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    """One record written with confluent-kafka (an independent client), as another writer would."""
    from confluent_kafka import Producer  # noqa: PLC0415 - test-only dependency

    producer = Producer({"bootstrap.servers": bootstrap})
    delivered: list[object] = []
    producer.produce(topic, value=value, headers=headers, on_delivery=lambda err, _: delivered.append(err))
    producer.flush(10)
    assert delivered == [None]

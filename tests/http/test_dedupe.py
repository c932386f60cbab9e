"""Redeliveries of one event (same ``source`` + ``id``) are published once: what senders see and what moves.

docs/http-api.md, "The dedupe window": a redelivery within the window is answered ``duplicate`` with where
the first copy went; deliveries arriving together publish once (the later ones wait for
the first one's outcome, and share its failure); ``BRIDGE_DEDUPE=off`` publishes every one.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from bridge.errors import PublishError
from tests.support.events import (
    DEADLETTER_TOPIC,
    FIXTURES,
    INVALID,
    attributes,
    body_bytes,
    valid_fixture,
    with_attributes,
)
from tests.support.http import json_answer, post_event, problem_answer, retry_after_s
from tests.support.metrics import event_counts, sample
from tests.support.waiting import until

PUBLISHED_FIXTURE = valid_fixture("06-correspondencepublished")
PUBLISHED_TOPIC = "altinn.correspondence.correspondencepublished"
NOT_JSON_FIXTURE = FIXTURES / "invalid" / "not-json.txt"
MISSING_ID_FIXTURE = FIXTURES / "invalid" / "missing-id.json"


def _redeliveries(registry, previous: str) -> float:
    return sample(registry, "altinn_bridge_redeliveries_total", previous=previous)


def _where(answer: dict[str, object]) -> tuple[object, object, object]:
    return answer["topic"], answer["partition"], answer["offset"]


# --- a redelivery after the first was published ---------------------------------------------


async def test_redelivery_is_a_duplicate_pointing_at_the_first_copy(make_client, fake_publisher, registry):
    client = await make_client()
    event_id = attributes(PUBLISHED_FIXTURE)["id"]

    first = await json_answer(await post_event(client, PUBLISHED_FIXTURE))
    second = await json_answer(await post_event(client, PUBLISHED_FIXTURE))

    assert first == {
        "outcome": "published",
        "event_id": event_id,
        "topic": PUBLISHED_TOPIC,
        "partition": 0,
        "offset": 0,
    }
    assert second == {**first, "outcome": "duplicate"}
    assert [r.value for r in fake_publisher.records] == [body_bytes(PUBLISHED_FIXTURE)]
    assert event_counts(registry) == {
        ("published", "correspondencepublished"): 1,
        ("duplicate", "correspondencepublished"): 1,
    }
    assert _redeliveries(registry, "published") == 1
    assert _redeliveries(registry, "in_flight") == 0
    assert _redeliveries(registry, "failed") == 0


async def test_every_later_redelivery_is_a_duplicate_of_the_first(make_client, fake_publisher, registry):
    client = await make_client()
    first = await json_answer(await post_event(client, PUBLISHED_FIXTURE))

    later = [await json_answer(await post_event(client, PUBLISHED_FIXTURE)) for _ in range(4)]

    assert {a["outcome"] for a in later} == {"duplicate"}
    assert {_where(a) for a in later} == {_where(first)}
    assert len(fake_publisher.records) == 1
    assert _redeliveries(registry, "published") == 4


async def test_duplicate_is_recognised_by_source_and_id_not_by_bytes(make_client, fake_publisher):
    # Altinn may re-serialise a retry; the key is (source, id), not the body.
    client = await make_client()
    await json_answer(await post_event(client, PUBLISHED_FIXTURE))
    reworded = with_attributes(PUBLISHED_FIXTURE, time="2026-11-20T09:05:56Z")

    answer = await json_answer(await post_event(client, reworded))

    assert answer["outcome"] == "duplicate"
    assert [r.value for r in fake_publisher.records] == [body_bytes(PUBLISHED_FIXTURE)]


async def test_same_id_from_another_source_is_another_event(make_client, fake_publisher, registry):
    client = await make_client()
    other_source = with_attributes(
        PUBLISHED_FIXTURE, source="https://platform.altinn.no/correspondence/api/v1/correspondence"
    )

    first = await json_answer(await post_event(client, PUBLISHED_FIXTURE))
    second = await json_answer(await post_event(client, other_source))

    assert (first["outcome"], second["outcome"]) == ("published", "published")
    assert [r.value for r in fake_publisher.records] == [body_bytes(PUBLISHED_FIXTURE), other_source]
    assert _redeliveries(registry, "published") == 0


async def test_other_id_from_the_same_source_is_another_event(make_client, fake_publisher):
    client = await make_client()
    other_id = with_attributes(PUBLISHED_FIXTURE, id="0f6a1f2e-5d4c-4b3a-9a8b-7c6d5e4f3a2b")

    answers = [await json_answer(await post_event(client, b)) for b in (PUBLISHED_FIXTURE, other_id)]

    assert [a["outcome"] for a in answers] == ["published", "published"]
    assert len(fake_publisher.records) == 2


# --- deliveries arriving together ---------------------------------------------------------------


async def test_concurrent_deliveries_publish_once(make_client, fake_publisher, registry):
    count = 50
    fake_publisher.gate = asyncio.Event()
    client = await make_client()

    posts = asyncio.gather(*(post_event(client, PUBLISHED_FIXTURE) for _ in range(count)))
    # Open the gate only once the 49 later deliveries are waiting on the first one.
    await until(lambda: _redeliveries(registry, "in_flight") == count - 1 and fake_publisher.held == 1)
    fake_publisher.gate.set()
    answers = [await json_answer(r) for r in await posts]

    assert Counter(a["outcome"] for a in answers) == {"published": 1, "duplicate": count - 1}
    assert {_where(a) for a in answers} == {(PUBLISHED_TOPIC, 0, 0)}
    assert [r.value for r in fake_publisher.records] == [body_bytes(PUBLISHED_FIXTURE)]
    assert fake_publisher.max_held == 1
    assert event_counts(registry) == {
        ("published", "correspondencepublished"): 1,
        ("duplicate", "correspondencepublished"): count - 1,
    }
    assert _redeliveries(registry, "in_flight") == count - 1
    assert _redeliveries(registry, "published") == 0


async def test_concurrent_deliveries_with_a_slow_kafka_publish_once(make_client, fake_publisher, registry):
    # The same with a publisher that is merely slow (delay_s): however the requests
    # interleave, exactly one is published and every other one is a duplicate of it.
    count = 50
    fake_publisher.delay_s = 0.2
    client = await make_client()

    answers = [
        await json_answer(r)
        for r in await asyncio.gather(*(post_event(client, PUBLISHED_FIXTURE) for _ in range(count)))
    ]

    assert Counter(a["outcome"] for a in answers) == {"published": 1, "duplicate": count - 1}
    assert len(fake_publisher.records) == 1
    assert _redeliveries(registry, "in_flight") + _redeliveries(registry, "published") == count - 1


async def test_first_delivery_failing_fails_the_waiting_ones_too(make_client, fake_publisher, registry):
    count = 5
    fake_publisher.gate = asyncio.Event()
    fake_publisher.fail_with = PublishError("timeout", "Kafka did not acknowledge (fake)")
    client = await make_client()

    posts = asyncio.gather(*(post_event(client, PUBLISHED_FIXTURE) for _ in range(count)))
    await until(lambda: _redeliveries(registry, "in_flight") == count - 1 and fake_publisher.held == 1)
    fake_publisher.gate.set()
    responses = await posts

    for response in responses:
        await problem_answer(response, 503, "kafka-unavailable")
        assert retry_after_s(response) > 0
    assert fake_publisher.records == []
    assert fake_publisher.max_held == 1, "the waiting deliveries must not publish themselves"
    assert event_counts(registry) == {("unavailable", "correspondencepublished"): count}
    # One publish failed; the waiters shared its failure without trying Kafka themselves.
    assert sample(registry, "altinn_bridge_kafka_producer_errors_total", error="timeout") == 1


async def test_retry_after_a_failure_is_published(make_client, fake_publisher, registry):
    fake_publisher.fail_with = PublishError("timeout", "Kafka did not acknowledge (fake)")
    client = await make_client()
    await problem_answer(await post_event(client, PUBLISHED_FIXTURE), 503, "kafka-unavailable")

    fake_publisher.fail_with = None
    retry = await json_answer(await post_event(client, PUBLISHED_FIXTURE))
    again = await json_answer(await post_event(client, PUBLISHED_FIXTURE))

    assert retry["outcome"] == "published"
    assert again == {**retry, "outcome": "duplicate"}
    assert [r.value for r in fake_publisher.records] == [body_bytes(PUBLISHED_FIXTURE)]
    assert _redeliveries(registry, "failed") == 1
    assert _redeliveries(registry, "published") == 1


async def test_retry_after_a_failure_shared_by_waiters_is_published_once(
    make_client, fake_publisher, registry
):
    count = 5
    fake_publisher.gate = asyncio.Event()
    fake_publisher.fail_with = PublishError("timeout", "Kafka did not acknowledge (fake)")
    client = await make_client()
    posts = asyncio.gather(*(post_event(client, PUBLISHED_FIXTURE) for _ in range(count)))
    await until(lambda: _redeliveries(registry, "in_flight") == count - 1)
    fake_publisher.gate.set()
    assert [r.status for r in await posts] == [503] * count

    fake_publisher.fail_with = None
    fake_publisher.gate = None
    retries = [await json_answer(await post_event(client, PUBLISHED_FIXTURE)) for _ in range(count)]

    assert [a["outcome"] for a in retries] == ["published"] + ["duplicate"] * (count - 1)
    assert len(fake_publisher.records) == 1
    assert _redeliveries(registry, "failed") == 1


# --- dedupe off ----------------------------------------------------------------------------------


async def test_dedupe_off_publishes_every_delivery(make_client, fake_publisher, registry):
    client = await make_client(BRIDGE_DEDUPE="off")

    answers = [await json_answer(await post_event(client, PUBLISHED_FIXTURE)) for _ in range(2)]

    assert [a["outcome"] for a in answers] == ["published", "published"]
    assert [a["offset"] for a in answers] == [0, 1]
    assert [r.value for r in fake_publisher.records] == [body_bytes(PUBLISHED_FIXTURE)] * 2
    assert event_counts(registry) == {("published", "correspondencepublished"): 2}
    assert sum(_redeliveries(registry, previous) for previous in ("published", "in_flight", "failed")) == 0


# --- what is never remembered ------------------------------------------------------------------


async def test_filtered_event_is_filtered_again_never_duplicate(make_client, fake_publisher, registry):
    client = await make_client(BRIDGE_FILTER_SOURCES="production")

    answers = [await json_answer(await post_event(client, PUBLISHED_FIXTURE)) for _ in range(2)]

    assert [a["outcome"] for a in answers] == ["filtered", "filtered"]
    assert fake_publisher.records == []
    assert event_counts(registry) == {("filtered", "correspondencepublished"): 2}
    assert sample(registry, "altinn_bridge_dedupe_entries") == 0


@pytest.mark.parametrize("path", [NOT_JSON_FIXTURE, MISSING_ID_FIXTURE], ids=lambda p: p.stem)
async def test_dead_lettered_body_is_dead_lettered_again_never_duplicate(
    make_client, fake_publisher, registry, path
):
    assert path in INVALID
    client = await make_client()

    answers = [await json_answer(await post_event(client, path)) for _ in range(2)]

    assert [a["outcome"] for a in answers] == ["dead_lettered", "dead_lettered"]
    assert [a["offset"] for a in answers] == [0, 1]
    assert [(r.topic, r.value) for r in fake_publisher.records] == [(DEADLETTER_TOPIC, body_bytes(path))] * 2
    assert event_counts(registry) == {("dead_lettered", "other"): 2}


async def test_validation_event_is_never_a_duplicate(make_client, fake_publisher, registry):
    client = await make_client()
    validation = valid_fixture("19-validation-event")

    answers = [await json_answer(await post_event(client, validation)) for _ in range(2)]

    assert [a["outcome"] for a in answers] == ["validation", "validation"]
    assert fake_publisher.records == []
    assert sample(registry, "altinn_bridge_dedupe_entries") == 0


# --- the window's size, in metrics --------------------------------------------------------------


async def test_dedupe_entries_gauge_counts_distinct_published_events(make_client, fake_publisher, registry):
    client = await make_client()
    bodies = [with_attributes(PUBLISHED_FIXTURE, id=f"event-{n}") for n in range(3)]

    for body in [*bodies, bodies[0], bodies[1]]:
        await json_answer(await post_event(client, body))
    await json_answer(await post_event(client, b"{not json"))

    assert len(fake_publisher.records) == 4  # three events and one dead letter
    assert sample(registry, "altinn_bridge_dedupe_entries") == 3
    metrics = await (await client.get("/metrics")).text()
    assert "altinn_bridge_dedupe_entries 3.0" in metrics


async def test_full_window_evicts_the_oldest_which_is_then_published_again(
    make_client, fake_publisher, registry
):
    client = await make_client(BRIDGE_DEDUPE_MAX_ENTRIES="2")
    bodies = [with_attributes(PUBLISHED_FIXTURE, id=f"event-{n}") for n in range(3)]
    for body in bodies:
        assert (await json_answer(await post_event(client, body)))["outcome"] == "published"

    oldest_again = await json_answer(await post_event(client, bodies[0]))
    newest_again = await json_answer(await post_event(client, bodies[2]))

    assert oldest_again["outcome"] == "published"
    assert oldest_again["offset"] == 3
    assert newest_again["outcome"] == "duplicate"
    assert [r.value for r in fake_publisher.records] == [*bodies, bodies[0]]
    # event-0 made room for event-2, then event-1 for event-0's second copy.
    assert sample(registry, "altinn_bridge_dedupe_evictions_total", reason="full") == 2
    assert sample(registry, "altinn_bridge_dedupe_evictions_total", reason="expired") == 0
    assert sample(registry, "altinn_bridge_dedupe_entries") == 2


async def test_one_eviction_for_room_is_counted_once(make_client, registry):
    client = await make_client(BRIDGE_DEDUPE_MAX_ENTRIES="2")

    for n in range(3):
        await json_answer(await post_event(client, with_attributes(PUBLISHED_FIXTURE, id=f"event-{n}")))

    assert sample(registry, "altinn_bridge_dedupe_evictions_total", reason="full") == 1


# --- dedupe kept in Kafka, window not loaded ------------------------------------------------------


async def test_kafka_dedupe_not_loaded_answers_not_ready(make_client, fake_publisher, registry):
    # The fake publisher starts, but the state topic is read with a consumer of its own,
    # from KAFKA_BOOTSTRAP_SERVERS (127.0.0.1:1, where nothing listens): it never loads.
    client = await make_client(BRIDGE_DEDUPE="kafka")

    response = await post_event(client, PUBLISHED_FIXTURE)
    problem = await problem_answer(response, 503, "not-ready")
    ready = await json_answer(await client.get("/readyz"), 503)

    assert retry_after_s(response) > 0
    assert fake_publisher.records == []
    assert event_counts(registry) == {("unavailable", "correspondencepublished"): 1}
    assert ready["status"] == "not ready"
    assert list(ready["failing"]) == ["dedupe"]
    assert problem["detail"]

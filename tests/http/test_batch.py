"""Batches (``application/cloudevents-batch+json``): one result per event, 2xx only when all are dealt with.

docs/http-api.md, "Answers on POST /api/v1/events": 200 ``accepted`` with per-event ``results`` in
order when every event is published, duplicate, validation, filtered or dead-lettered;
503 ``batch-incomplete`` when a resend can help (what was published comes back
``duplicate``); 400 ``batch-rejected`` under the ``reject`` policy; 400 ``invalid-batch``
for a body that is not a JSON array; 413 over ``BRIDGE_MAX_BATCH_BYTES`` or
``BRIDGE_MAX_BATCH_EVENTS``. Elements are re-serialised compactly before publishing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from bridge.errors import PublishError
from tests.support.events import (
    DEADLETTER_TOPIC,
    RECORD_CONTENT_TYPE,
    VALID,
    VALID_EVENTS,
    VALIDATION_FIXTURE,
    attributes,
    default_topic,
    type_label,
    valid_fixture,
    with_attributes,
)
from tests.support.http import EVENTS_PATH, json_answer, problem_answer, retry_after_s
from tests.support.metrics import event_counts, sample
from tests.support.waiting import until

BATCH_TYPE = "application/cloudevents-batch+json"
PUBLISHED_FIXTURE = valid_fixture("06-correspondencepublished")
PURGED_FIXTURE = valid_fixture("08-correspondencepurged")
PRODUCTION_FIXTURE = valid_fixture("23-production-source")
#: Three ordinary events of three types.
THREE = [valid_fixture("01-attachmentinitialized"), PUBLISHED_FIXTURE, PURGED_FIXTURE]


def _items(paths: list[Path]) -> list[dict[str, Any]]:
    return [attributes(p) for p in paths]


def _batch_body(items: list[Any]) -> bytes:
    return orjson.dumps(items)


async def post_batch(
    client: TestClient, body: bytes | list[Any], content_type: str = BATCH_TYPE
) -> ClientResponse:
    """POST a batch: a list is sent as its JSON, bytes as they are."""
    data = body if isinstance(body, bytes) else _batch_body(body)
    return await client.post(EVENTS_PATH, data=data, headers={"Content-Type": content_type})


def _outcomes(results: list[dict[str, Any]]) -> list[str]:
    return [r["outcome"] for r in results]


def _assert_in_order(results: list[dict[str, Any]], count: int) -> None:
    assert [r["index"] for r in results] == list(range(count))


# --- accepted batches -----------------------------------------------------------------------------


async def test_batch_of_every_valid_fixture(make_client, fake_publisher):
    client = await make_client()
    items = _items(VALID)

    answer = await json_answer(await post_batch(client, items))

    assert answer["outcome"] == "accepted"
    assert answer["count"] == len(VALID)
    assert answer["outcomes"] == {"published": len(VALID_EVENTS), "validation": 1}
    results = answer["results"]
    _assert_in_order(results, len(VALID))
    for path, item, result in zip(VALID, items, results, strict=True):
        assert result["event_id"] == item["id"]
        if path == VALIDATION_FIXTURE:
            assert result == {"index": result["index"], "outcome": "validation", "event_id": item["id"]}
        else:
            assert result["outcome"] == "published"
            assert result["topic"] == default_topic(item["type"])
            assert isinstance(result["partition"], int)
            assert isinstance(result["offset"], int)
    # One record per event (not the validation event), each where its result says.
    records = {(r.topic, r.key): r for r in fake_publisher.records}
    assert len(records) == len(fake_publisher.records) == len(VALID_EVENTS)
    for item in (attributes(p) for p in VALID_EVENTS):
        record = records[default_topic(item["type"]), item["resourceinstance"].encode()]
        assert orjson.loads(record.value) == item
        assert record.value == orjson.dumps(item)  # re-serialised compactly
        assert record.headers == [("content-type", RECORD_CONTENT_TYPE)]


async def test_batch_answer_offsets_name_the_records(make_client, fake_publisher):
    client = await make_client()
    items = [orjson.loads(with_attributes(PUBLISHED_FIXTURE, id=f"event-{n}")) for n in range(3)]

    answer = await json_answer(await post_batch(client, items))

    by_offset = {r["offset"]: r for r in answer["results"]}
    assert sorted(by_offset) == [0, 1, 2]
    for offset, result in by_offset.items():
        record = fake_publisher.records[offset]  # the fake numbers records per topic from 0
        assert orjson.loads(record.value)["id"] == result["event_id"]


async def test_batch_metrics_count_each_event(make_client, registry):
    client = await make_client()
    items = [*_items([*THREE, VALIDATION_FIXTURE]), {"not": "an event"}]

    await json_answer(await post_batch(client, items))

    assert event_counts(registry) == {
        ("published", "attachmentinitialized"): 1,
        ("published", "correspondencepublished"): 1,
        ("published", "correspondencepurged"): 1,
        ("validation", "validatesubscription"): 1,
        ("dead_lettered", "other"): 1,
    }


@pytest.mark.parametrize(
    "content_type",
    [BATCH_TYPE, f"{BATCH_TYPE}; charset=utf-8", "Application/CloudEvents-Batch+JSON"],
    ids=["plain", "charset", "mixed-case"],
)
async def test_batch_content_types(make_client, fake_publisher, content_type: str):
    client = await make_client()

    answer = await json_answer(await post_batch(client, _items(THREE), content_type))

    assert answer["outcomes"] == {"published": 3}
    assert len(fake_publisher.records) == 3


async def test_empty_batch_is_accepted(make_client, fake_publisher, registry):
    client = await make_client()

    answer = await json_answer(await post_batch(client, b"[]"))

    assert answer == {"outcome": "accepted", "count": 0, "outcomes": {}, "results": []}
    assert fake_publisher.records == []
    assert event_counts(registry) == {}


async def test_invalid_element_is_dead_lettered_and_the_batch_accepted(make_client, fake_publisher, registry):
    client = await make_client()
    bad = orjson.loads(with_attributes(PUBLISHED_FIXTURE, id="bad-time", time="yesterday"))
    items = [attributes(PURGED_FIXTURE), bad, 42]

    answer = await json_answer(await post_batch(client, items))

    assert answer["outcome"] == "accepted"
    assert answer["outcomes"] == {"published": 1, "dead_lettered": 2}
    results = answer["results"]
    _assert_in_order(results, 3)
    assert _outcomes(results) == ["published", "dead_lettered", "dead_lettered"]
    assert results[1]["event_id"] == "bad-time"
    assert (results[1]["reason"], results[1]["field"]) == ("invalid_attribute", "time")
    assert results[1]["topic"] == DEADLETTER_TOPIC
    assert results[2]["reason"] == "not_an_object"
    dead = [r for r in fake_publisher.records if r.topic == DEADLETTER_TOPIC]
    assert sorted(r.value for r in dead) == sorted([orjson.dumps(bad), b"42"])
    assert {r.header("dlq_reason") for r in dead} == {b"invalid_attribute", b"not_an_object"}
    assert event_counts(registry) == {
        ("published", "correspondencepurged"): 1,
        ("dead_lettered", "other"): 2,
    }


async def test_filtered_elements_are_accepted_not_published(make_client, fake_publisher):
    client = await make_client(BRIDGE_FILTER_SOURCES="production")

    answer = await json_answer(await post_batch(client, _items([PUBLISHED_FIXTURE, PRODUCTION_FIXTURE])))

    assert _outcomes(answer["results"]) == ["filtered", "published"]
    assert answer["results"][0]["filtered_by"] == "source"
    assert [orjson.loads(r.value)["id"] for r in fake_publisher.records] == [
        attributes(PRODUCTION_FIXTURE)["id"]
    ]


# --- duplicates within and across batches -----------------------------------------------------------


async def test_same_event_twice_in_one_batch_is_published_once(make_client, fake_publisher, registry):
    client = await make_client()
    item = attributes(PUBLISHED_FIXTURE)

    answer = await json_answer(await post_batch(client, [item, item]))

    assert answer["outcomes"] == {"published": 1, "duplicate": 1}
    first, second = answer["results"]
    assert (first["outcome"], second["outcome"]) == ("published", "duplicate")
    assert {k: v for k, v in second.items() if k not in ("index", "outcome")} == {
        k: v for k, v in first.items() if k not in ("index", "outcome")
    }
    assert len(fake_publisher.records) == 1
    assert (
        sample(registry, "altinn_bridge_redeliveries_total", previous="in_flight")
        + sample(registry, "altinn_bridge_redeliveries_total", previous="published")
        == 1
    )


async def test_resent_batch_is_all_duplicates(make_client, fake_publisher):
    client = await make_client()
    first = await json_answer(await post_batch(client, _items(THREE)))

    again = await json_answer(await post_batch(client, _items(THREE)))

    assert again["outcomes"] == {"duplicate": 3}
    for one, other in zip(first["results"], again["results"], strict=True):
        assert (other["topic"], other["partition"], other["offset"]) == (
            one["topic"],
            one["partition"],
            one["offset"],
        )
    assert len(fake_publisher.records) == 3


async def test_event_posted_alone_then_in_a_batch_is_a_duplicate(make_client, fake_publisher):
    client = await make_client()
    response = await client.post(
        EVENTS_PATH, data=PUBLISHED_FIXTURE.read_bytes(), headers={"Content-Type": "application/json"}
    )
    assert (await json_answer(response))["outcome"] == "published"

    answer = await json_answer(await post_batch(client, _items([PUBLISHED_FIXTURE, PURGED_FIXTURE])))

    assert _outcomes(answer["results"]) == ["duplicate", "published"]
    assert len(fake_publisher.records) == 2


# --- batches that are not accepted -----------------------------------------------------------------


async def test_kafka_down_is_503_incomplete_with_retryable_results(make_client, fake_publisher, registry):
    fake_publisher.fail_with = PublishError("timeout", "Kafka did not acknowledge (fake)")
    client = await make_client()

    response = await post_batch(client, _items(THREE))
    problem = await problem_answer(response, 503, "batch-incomplete")

    assert retry_after_s(response) > 0
    assert problem["count"] == 3
    assert problem["outcomes"] == {"unavailable": 3}
    _assert_in_order(problem["results"], 3)
    for result in problem["results"]:
        assert result["outcome"] == "unavailable"
        assert result["retryable"] is True
        assert result["status"] == 503
        assert "Kafka did not acknowledge" in result["detail"]
    assert fake_publisher.records == []
    assert event_counts(registry) == {("unavailable", type_label(item["type"])): 1 for item in _items(THREE)}


async def test_resend_after_kafka_recovers_publishes_each_once(make_client, fake_publisher, registry):
    fake_publisher.fail_with = PublishError("timeout", "Kafka did not acknowledge (fake)")
    client = await make_client()
    await problem_answer(await post_batch(client, _items(THREE)), 503, "batch-incomplete")

    fake_publisher.fail_with = None
    resent = await json_answer(await post_batch(client, _items(THREE)))
    again = await json_answer(await post_batch(client, _items(THREE)))

    assert resent["outcomes"] == {"published": 3}
    assert again["outcomes"] == {"duplicate": 3}
    assert len(fake_publisher.records) == 3
    assert sample(registry, "altinn_bridge_redeliveries_total", previous="failed") == 3


async def test_partly_failed_batch_resent_publishes_only_what_is_missing(make_client, fake_publisher):
    purged_topic = default_topic(attributes(PURGED_FIXTURE)["type"])
    fake_publisher.failing_topics = {purged_topic}
    client = await make_client()

    response = await post_batch(client, _items(THREE))
    problem = await problem_answer(response, 503, "batch-incomplete")
    assert _outcomes(problem["results"]) == ["published", "published", "unavailable"]
    assert problem["results"][2]["retryable"] is True
    assert "retryable" not in problem["results"][0]

    fake_publisher.failing_topics = set()
    resent = await json_answer(await post_batch(client, _items(THREE)))

    assert _outcomes(resent["results"]) == ["duplicate", "duplicate", "published"]
    assert resent["results"][2]["topic"] == purged_topic
    assert sorted(orjson.loads(r.value)["id"] for r in fake_publisher.records) == sorted(
        item["id"] for item in _items(THREE)
    )


async def test_reject_policy_rejects_the_batch_with_results(make_client, fake_publisher, registry):
    client = await make_client(BRIDGE_INVALID_EVENT_POLICY="reject")
    bad = orjson.loads(with_attributes(PUBLISHED_FIXTURE, id="no-resourceinstance", resourceinstance=None))

    response = await post_batch(client, [attributes(PURGED_FIXTURE), bad])
    problem = await problem_answer(response, 400, "batch-rejected")

    assert "Retry-After" not in response.headers
    assert problem["count"] == 2
    assert problem["outcomes"] == {"published": 1, "rejected": 1}
    ok, rejected = problem["results"]
    assert (ok["index"], ok["outcome"]) == (0, "published")
    assert rejected["index"] == 1
    assert rejected["outcome"] == "rejected"
    assert rejected["status"] == 400
    assert rejected["retryable"] is False
    assert rejected["reason"] == "missing_attribute"
    assert rejected["field"] == "resourceinstance"
    assert rejected["event_id"] == "no-resourceinstance"
    assert [orjson.loads(r.value)["id"] for r in fake_publisher.records] == [attributes(PURGED_FIXTURE)["id"]]
    assert event_counts(registry) == {("published", "correspondencepurged"): 1, ("rejected", "other"): 1}


async def test_retryable_failure_wins_over_a_rejection(make_client, fake_publisher):
    # Resending can still help the unavailable element, so the answer is 503, not 400.
    fake_publisher.fail_with = PublishError("timeout", "Kafka did not acknowledge (fake)")
    client = await make_client(BRIDGE_INVALID_EVENT_POLICY="reject")

    response = await post_batch(client, [attributes(PURGED_FIXTURE), {"specversion": "1.0"}])
    problem = await problem_answer(response, 503, "batch-incomplete")

    assert retry_after_s(response) > 0
    assert _outcomes(problem["results"]) == ["unavailable", "rejected"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"specversion": "1.0"}', "JSON dict"),
        (b'"a string"', "JSON str"),
        (b"42", "JSON int"),
        (b"null", "JSON NoneType"),
        (b"[{oops", "not valid JSON"),
        (b"not json at all", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
    ids=["object", "string", "number", "null", "broken-array", "not-json", "empty"],
)
async def test_body_that_is_not_a_json_array_is_invalid_batch(
    make_client, fake_publisher, registry, body: bytes, says: str
):
    client = await make_client()

    response = await post_batch(client, body)
    problem = await problem_answer(response, 400, "invalid-batch")

    assert says in problem["detail"]
    assert "Retry-After" not in response.headers
    assert fake_publisher.records == []
    assert event_counts(registry) == {("rejected", "other"): 1}


async def test_more_events_than_max_batch_events_is_413(make_client, fake_publisher, registry):
    client = await make_client(BRIDGE_MAX_BATCH_EVENTS="3")
    items = [orjson.loads(with_attributes(PUBLISHED_FIXTURE, id=f"event-{n}")) for n in range(4)]

    problem = await problem_answer(await post_batch(client, items), 413, "payload-too-large")

    assert "BRIDGE_MAX_BATCH_EVENTS" in problem["detail"]
    assert "4" in problem["detail"]
    assert fake_publisher.records == []
    assert event_counts(registry) == {("rejected", "other"): 1}


async def test_max_batch_events_exactly_is_accepted(make_client, fake_publisher):
    client = await make_client(BRIDGE_MAX_BATCH_EVENTS="3")

    answer = await json_answer(await post_batch(client, _items(THREE)))

    assert answer["count"] == 3
    assert len(fake_publisher.records) == 3


def _batch_of_size(size: int) -> bytes:
    body = _batch_body(_items(THREE))
    assert len(body) <= size
    return body[:-1] + b" " * (size - len(body)) + b"]"


async def test_batch_over_max_batch_bytes_is_413(make_client, fake_publisher, registry):
    limit = 2048
    client = await make_client(BRIDGE_MAX_BATCH_BYTES=str(limit))

    response = await post_batch(client, _batch_of_size(limit + 1))
    problem = await problem_answer(response, 413, "payload-too-large")

    assert "BRIDGE_MAX_BATCH_BYTES" in problem["detail"]
    assert str(limit) in problem["detail"]
    assert fake_publisher.records == []
    assert event_counts(registry) == {("rejected", "other"): 1}


async def test_batch_at_max_batch_bytes_is_accepted(make_client, fake_publisher):
    limit = 2048
    client = await make_client(BRIDGE_MAX_BATCH_BYTES=str(limit))

    answer = await json_answer(await post_batch(client, _batch_of_size(limit)))

    assert answer["outcomes"] == {"published": 3}
    assert len(fake_publisher.records) == 3


async def test_batch_larger_than_max_body_bytes_is_accepted(make_client, fake_publisher):
    # BRIDGE_MAX_BODY_BYTES limits one event; a batch has its own limit.
    client = await make_client(BRIDGE_MAX_BODY_BYTES="1024")
    body = _batch_body(_items(THREE))
    assert len(body) > 1024

    answer = await json_answer(await post_batch(client, body))

    assert answer["outcomes"] == {"published": 3}
    assert len(fake_publisher.records) == 3


# --- overload -------------------------------------------------------------------------------------


async def test_fifth_batch_in_flight_is_overloaded(make_client, fake_publisher, registry):
    # docs/http-api.md, "Overload": at most 4 batches in flight; beyond that 503 overloaded at once.
    fake_publisher.gate = asyncio.Event()
    client = await make_client()
    batches = [[orjson.loads(with_attributes(PUBLISHED_FIXTURE, id=f"batch-{n}"))] for n in range(5)]

    held = asyncio.gather(*(post_batch(client, batch) for batch in batches[:4]))
    await until(lambda: fake_publisher.held == 4)
    response = await post_batch(client, batches[4])
    problem = await problem_answer(response, 503, "overloaded")
    fake_publisher.gate.set()

    assert retry_after_s(response) == 1
    assert "batches" in problem["detail"]
    assert [r.status for r in await held] == [200] * 4
    assert len(fake_publisher.records) == 4
    assert event_counts(registry) == {
        ("published", "correspondencepublished"): 4,
        ("overloaded", "other"): 1,
    }
    # Once one finishes, a batch is taken again.
    assert (await json_answer(await post_batch(client, batches[4])))["outcomes"] == {"published": 1}


async def test_batch_elements_beyond_max_in_flight_are_overloaded_and_resendable(
    make_client, fake_publisher, registry
):
    limit, count = 4, 6
    fake_publisher.gate = asyncio.Event()
    client = await make_client(BRIDGE_MAX_IN_FLIGHT=str(limit))
    items = [orjson.loads(with_attributes(PUBLISHED_FIXTURE, id=f"event-{n}")) for n in range(count)]

    posted = asyncio.ensure_future(post_batch(client, items))
    await until(
        lambda: (
            fake_publisher.held == limit
            and sample(
                registry, "altinn_bridge_events_total", outcome="overloaded", type="correspondencepublished"
            )
            == count - limit
        )
    )
    fake_publisher.gate.set()
    response = await posted
    problem = await problem_answer(response, 503, "batch-incomplete")

    assert Counter(_outcomes(problem["results"])) == {"published": limit, "overloaded": count - limit}
    assert all(r["retryable"] for r in problem["results"] if r["outcome"] == "overloaded")
    assert len(fake_publisher.records) == limit

    fake_publisher.gate = None
    resent = await json_answer(await post_batch(client, items))

    assert Counter(_outcomes(resent["results"])) == {"duplicate": limit, "published": count - limit}
    assert len(fake_publisher.records) == count

"""POST /api/v1/events with events Altinn sends: what is answered, what lands in Kafka, what is counted."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from tests.support.events import (
    ALTINN_CONTENT_TYPE,
    KNOWN_TYPE_NAMES,
    UNKNOWN_TOPIC,
    UNKNOWN_TYPE_FIXTURE,
    VALID,
    VALID_EVENTS,
    VALIDATION_FIXTURE,
    assert_event_record,
    attributes,
    body_bytes,
    default_topic,
    fixture_ids,
    type_label,
    valid_fixture,
    with_attributes,
)
from tests.support.http import json_answer, post_event, problem_answer
from tests.support.metrics import event_counts, sample

PUBLISHED_FIXTURE = valid_fixture("06-correspondencepublished")


def test_fixture_lists_cover_every_case():
    # The parametrised tests below are only as good as these lists.
    assert len(VALID_EVENTS) == len(VALID) - 1 >= 24
    assert len(KNOWN_TYPE_NAMES) == 18
    assert UNKNOWN_TYPE_FIXTURE in VALID_EVENTS
    assert default_topic(attributes(UNKNOWN_TYPE_FIXTURE)["type"]) == UNKNOWN_TOPIC
    known = [p for p in VALID_EVENTS if type_label(attributes(p)["type"]) != "other"]
    assert len(known) == len(VALID_EVENTS) - 1


# --- every valid fixture ---------------------------------------------------------


@pytest.mark.parametrize("path", VALID_EVENTS, ids=fixture_ids(VALID_EVENTS))
async def test_valid_event_published_once_byte_for_byte(make_client, fake_publisher, registry, path: Path):
    client = await make_client()
    raw = body_bytes(path)
    event = attributes(raw)
    topic = default_topic(event["type"])

    answer = await json_answer(await post_event(client, raw))

    assert answer == {
        "outcome": "published",
        "event_id": event["id"],
        "topic": topic,
        "partition": 0,
        "offset": 0,
    }
    assert len(fake_publisher.records) == 1
    assert_event_record(fake_publisher.records[0], raw, topic)
    assert event_counts(registry) == {("published", type_label(event["type"])): 1}
    assert sample(registry, "altinn_bridge_publish_duration_seconds_count", result="ok") == 1
    assert sample(registry, "altinn_bridge_publish_duration_seconds_count", result="error") == 0


async def test_unknown_type_is_not_lost(make_client, fake_publisher, registry):
    client = await make_client()

    answer = await json_answer(await post_event(client, UNKNOWN_TYPE_FIXTURE))

    assert answer["outcome"] == "published"
    assert [r.topic for r in fake_publisher.records] == [UNKNOWN_TOPIC]
    assert event_counts(registry) == {("published", "other"): 1}


async def test_event_without_time_has_no_ce_time_header(make_client, fake_publisher):
    client = await make_client(BRIDGE_RECORD_CE_HEADERS="on")
    body = with_attributes(PUBLISHED_FIXTURE, time=None)

    await json_answer(await post_event(client, body))

    (record,) = fake_publisher.records
    assert record.value == body
    assert record.header("ce_id") == attributes(body)["id"].encode()
    assert record.header("ce_time") is None


async def test_key_is_resourceinstance_in_utf8(make_client, fake_publisher):
    client = await make_client()
    body = with_attributes(PUBLISHED_FIXTURE, resourceinstance="bestilling-æøå-Ω")

    await json_answer(await post_event(client, body))

    (record,) = fake_publisher.records
    assert record.key == "bestilling-æøå-Ω".encode()
    assert record.value == body


async def test_offsets_follow_each_other_in_the_answer(make_client, fake_publisher):
    client = await make_client()
    bodies = [with_attributes(PUBLISHED_FIXTURE, id=str(uuid.uuid4())) for _ in range(3)]
    answers = [await json_answer(await post_event(client, body)) for body in bodies]

    assert [a["offset"] for a in answers] == [0, 1, 2]
    assert len(fake_publisher.records) == 3


# --- content types -----------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        ALTINN_CONTENT_TYPE,
        "application/cloudevents+json",
        "application/cloudevents+json; charset=utf-8",
        "Application/JSON; Charset=UTF-8",
        "APPLICATION/CLOUDEVENTS+JSON",
    ],
    ids=["json", "json-charset-altinn", "cloudevents", "cloudevents-charset", "json-mixed-case", "ce-upper"],
)
async def test_structured_content_types_accepted(make_client, fake_publisher, content_type: str):
    client = await make_client()

    answer = await json_answer(await post_event(client, PUBLISHED_FIXTURE, content_type))

    assert answer["outcome"] == "published"
    assert len(fake_publisher.records) == 1
    assert fake_publisher.records[0].value == body_bytes(PUBLISHED_FIXTURE)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        None,
        "application/x-www-form-urlencoded",
        "application/xml",
        "application/octet-stream",
    ],
    ids=["text-plain", "missing", "form", "xml", "octet-stream"],
)
async def test_other_content_types_rejected_with_415(
    make_client, fake_publisher, registry, content_type: str | None
):
    client = await make_client()

    problem = await problem_answer(
        await post_event(client, PUBLISHED_FIXTURE, content_type), 415, "unsupported-media-type"
    )

    assert "application/json" in problem["detail"]
    if content_type is not None:
        assert content_type in problem["detail"]
    assert fake_publisher.records == []
    assert event_counts(registry) == {("rejected", "other"): 1}


async def test_invalid_body_with_wrong_content_type_is_not_dead_lettered(make_client, fake_publisher):
    client = await make_client()

    await problem_answer(await post_event(client, b"not json", "text/plain"), 415, "unsupported-media-type")

    assert fake_publisher.records == []


# --- the subscription validation handshake -------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"BRIDGE_TOPIC_ROUTES": "*=altinn.all"},
        {"BRIDGE_FILTER_SOURCES": "production", "BRIDGE_FILTER_TYPES": "correspondencepublished"},
        {"BRIDGE_INVALID_EVENT_POLICY": "reject"},
    ],
    ids=["defaults", "catch-all-route", "filters-that-exclude-its-source", "reject-policy"],
)
async def test_validation_event_answered_200_never_published(
    make_client, fake_publisher, registry, env: dict[str, str]
):
    client = await make_client(**env)

    answer = await json_answer(await post_event(client, VALIDATION_FIXTURE))

    assert answer == {"outcome": "validation", "event_id": attributes(VALIDATION_FIXTURE)["id"]}
    assert fake_publisher.records == []
    assert event_counts(registry) == {("validation", "validatesubscription"): 1}


async def test_validation_event_type_matched_case_insensitively(make_client, fake_publisher, registry):
    client = await make_client()
    body = with_attributes(VALIDATION_FIXTURE, type="Platform.Events.ValidateSubscription")

    answer = await json_answer(await post_event(client, body))

    assert answer["outcome"] == "validation"
    assert fake_publisher.records == []
    assert event_counts(registry) == {("validation", "validatesubscription"): 1}


# --- type matching is case-insensitive -------------------------------------------------


@pytest.mark.parametrize(
    "event_type",
    [
        "NO.ALTINN.CORRESPONDENCE.CORRESPONDENCEPUBLISHED",
        "No.Altinn.Correspondence.CorrespondencePublished",
        "no.altinn.correspondence.correspondencePublished",
    ],
    ids=["upper", "title", "camel"],
)
async def test_type_case_does_not_change_the_topic(make_client, fake_publisher, registry, event_type: str):
    client = await make_client()
    raw = body_bytes(PUBLISHED_FIXTURE)
    body = raw.replace(b"no.altinn.correspondence.correspondencepublished", event_type.encode())
    assert body != raw

    answer = await json_answer(await post_event(client, body))

    topic = "altinn.correspondence.correspondencepublished"
    assert answer["topic"] == topic
    (record,) = fake_publisher.records
    # The record carries the event exactly as sent, type casing included.
    assert_event_record(record, body, topic)
    assert event_counts(registry) == {("published", "correspondencepublished"): 1}


# --- publishes run side by side ------------------------------------------------------


async def test_concurrent_events_are_published_side_by_side(make_client, fake_publisher):
    count, delay_s = 10, 0.2
    fake_publisher.delay_s = delay_s
    client = await make_client()
    bodies = [
        with_attributes(PUBLISHED_FIXTURE, id=f"id-{n}", resourceinstance=f"ri-{n}") for n in range(count)
    ]

    started = time.perf_counter()
    responses = await asyncio.gather(*(post_event(client, body) for body in bodies))
    elapsed = time.perf_counter() - started

    assert [r.status for r in responses] == [200] * count
    assert fake_publisher.max_publishing == count
    assert elapsed < count * delay_s / 2
    assert sorted(r.key for r in fake_publisher.records) == sorted(f"ri-{n}".encode() for n in range(count))

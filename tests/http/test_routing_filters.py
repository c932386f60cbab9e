"""Where events land (topic prefix, routing table) and which ones the local filters keep out."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.events import (
    UNKNOWN_TYPE_FIXTURE,
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
from tests.support.http import json_answer, post_event
from tests.support.metrics import event_counts

ATTACHMENT_INITIALIZED = valid_fixture("01-attachmentinitialized")
ATTACHMENT_PUBLISHED = valid_fixture("02-attachmentpublished")
CORRESPONDENCE_PUBLISHED = valid_fixture("06-correspondencepublished")
NOTIFICATION_CREATED = valid_fixture("13-notificationcreated")
LEGACY_SUBJECT = valid_fixture("20-legacy-party-subject")
NO_ALTERNATIVESUBJECT = valid_fixture("21-person-recipient-no-alternativesubject")
PERSON = valid_fixture("22-person-recipient-national-id")
PRODUCTION = valid_fixture("23-production-source")

ATTACHMENT_GLOB = "no.altinn.correspondence.attachment*"


async def _outcome(make_client, path: Path | bytes, env: dict[str, str]) -> dict[str, object]:
    client = await make_client(**env)
    return await json_answer(await post_event(client, path))


# --- routing -----------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID_EVENTS, ids=fixture_ids(VALID_EVENTS))
async def test_catch_all_route_sends_every_event_to_one_topic(make_client, fake_publisher, path: Path):
    answer = await _outcome(make_client, path, {"BRIDGE_TOPIC_ROUTES": "*=altinn.all"})

    assert answer["topic"] == "altinn.all"
    (record,) = fake_publisher.records
    assert_event_record(record, body_bytes(path), "altinn.all")


@pytest.mark.parametrize(
    ("routes", "path", "topic"),
    [
        # exact type → topic; other types keep their default
        (
            "no.altinn.correspondence.correspondencepublished=acme.published",
            CORRESPONDENCE_PUBLISHED,
            "acme.published",
        ),
        ("no.altinn.correspondence.correspondencepublished=acme.published", ATTACHMENT_PUBLISHED, None),
        # patterns are case-insensitive
        (
            "No.Altinn.Correspondence.CorrespondencePublished=acme.published",
            CORRESPONDENCE_PUBLISHED,
            "acme.published",
        ),
        # glob → topic
        (f"{ATTACHMENT_GLOB}=acme.attachments", ATTACHMENT_INITIALIZED, "acme.attachments"),
        (f"{ATTACHMENT_GLOB}=acme.attachments", ATTACHMENT_PUBLISHED, "acme.attachments"),
        (f"{ATTACHMENT_GLOB}=acme.attachments", NOTIFICATION_CREATED, None),
        (
            "no.altinn.correspondence.?otificationcreated=acme.notifications",
            NOTIFICATION_CREATED,
            "acme.notifications",
        ),
        # exact beats glob, whatever the order
        (
            f"{ATTACHMENT_GLOB}=acme.attachments,no.altinn.correspondence.attachmentpublished=acme.att-published",
            ATTACHMENT_PUBLISHED,
            "acme.att-published",
        ),
        (
            f"no.altinn.correspondence.attachmentpublished=acme.att-published,{ATTACHMENT_GLOB}=acme.attachments",
            ATTACHMENT_INITIALIZED,
            "acme.attachments",
        ),
        # globs are tried in the order given
        (f"{ATTACHMENT_GLOB}=acme.attachments,*=acme.rest", ATTACHMENT_INITIALIZED, "acme.attachments"),
        (f"{ATTACHMENT_GLOB}=acme.attachments,*=acme.rest", CORRESPONDENCE_PUBLISHED, "acme.rest"),
        (f"*=acme.rest,{ATTACHMENT_GLOB}=acme.attachments", ATTACHMENT_INITIALIZED, "acme.rest"),
        # a type the bridge does not know yet can be routed too
        (
            "no.altinn.correspondence.correspondencereceiverreplied=acme.replied",
            UNKNOWN_TYPE_FIXTURE,
            "acme.replied",
        ),
        (
            "no.altinn.correspondence.correspondence*=acme.correspondence",
            UNKNOWN_TYPE_FIXTURE,
            "acme.correspondence",
        ),
    ],
    ids=[
        "exact",
        "exact-leaves-others",
        "exact-pattern-case",
        "glob-initialized",
        "glob-published",
        "glob-leaves-others",
        "glob-question-mark",
        "exact-beats-earlier-glob",
        "glob-after-exact-for-others",
        "first-glob-wins",
        "later-glob-catches-rest",
        "catch-all-first-wins",
        "unknown-type-exact",
        "unknown-type-glob",
    ],
)
async def test_routing_table(make_client, fake_publisher, routes: str, path: Path, topic: str | None):
    expected = topic or default_topic(attributes(path)["type"])

    answer = await _outcome(make_client, path, {"BRIDGE_TOPIC_ROUTES": routes})

    assert answer["topic"] == expected
    (record,) = fake_publisher.records
    assert_event_record(record, body_bytes(path), expected)


async def test_routes_apply_to_upper_case_types(make_client, fake_publisher):
    body = with_attributes(ATTACHMENT_PUBLISHED, type="NO.ALTINN.CORRESPONDENCE.ATTACHMENTPUBLISHED")

    answer = await _outcome(make_client, body, {"BRIDGE_TOPIC_ROUTES": f"{ATTACHMENT_GLOB}=acme.attachments"})

    assert answer["topic"] == "acme.attachments"
    assert [r.value for r in fake_publisher.records] == [body]


@pytest.mark.parametrize(
    ("path", "env", "topic"),
    [
        (
            CORRESPONDENCE_PUBLISHED,
            {"BRIDGE_TOPIC_PREFIX": "acme.altinn"},
            "acme.altinn.correspondencepublished",
        ),
        (UNKNOWN_TYPE_FIXTURE, {"BRIDGE_TOPIC_PREFIX": "acme.altinn"}, "acme.altinn.unknown"),
        (
            UNKNOWN_TYPE_FIXTURE,
            {"BRIDGE_TOPIC_PREFIX": "acme.altinn", "BRIDGE_TOPIC_UNKNOWN": "acme.new-types"},
            "acme.new-types",
        ),
        (b"{oops", {"BRIDGE_TOPIC_PREFIX": "acme.altinn"}, "acme.altinn.deadletter"),
    ],
    ids=["known-type", "unknown-type", "unknown-topic-set", "dead-letter"],
)
async def test_topic_prefix(make_client, fake_publisher, path: Path | bytes, env: dict[str, str], topic: str):
    answer = await _outcome(make_client, path, env)

    assert answer["topic"] == topic
    assert [r.topic for r in fake_publisher.records] == [topic]


# --- filters -----------------------------------------------------------------------

EVIL_SOURCE = with_attributes(
    PRODUCTION, source="https://platform.altinn.no.evil.example/correspondence/api/v1/x"
)
DEV_SOURCE = with_attributes(
    CORRESPONDENCE_PUBLISHED,
    source="https://altinn-dev-api.azure-api.net/correspondence/api/v1/correspondence",
)


@pytest.mark.parametrize(
    ("env", "body", "filtered_by"),
    [
        ({"BRIDGE_FILTER_SOURCES": "tt02"}, CORRESPONDENCE_PUBLISHED, None),
        ({"BRIDGE_FILTER_SOURCES": "tt02"}, PRODUCTION, "source"),
        ({"BRIDGE_FILTER_SOURCES": "tt02"}, DEV_SOURCE, "source"),
        ({"BRIDGE_FILTER_SOURCES": "production"}, PRODUCTION, None),
        ({"BRIDGE_FILTER_SOURCES": "production"}, CORRESPONDENCE_PUBLISHED, "source"),
        ({"BRIDGE_FILTER_SOURCES": "https://platform.altinn.no"}, EVIL_SOURCE, "source"),
        (
            {"BRIDGE_FILTER_SOURCES": "https://platform.tt02.altinn.no/correspondence/api/v1/attachment"},
            ATTACHMENT_INITIALIZED,
            None,
        ),
        (
            {"BRIDGE_FILTER_SOURCES": "https://platform.tt02.altinn.no/correspondence/api/v1/attachment"},
            CORRESPONDENCE_PUBLISHED,
            "source",
        ),
        ({"BRIDGE_FILTER_RESOURCES": "urn:altinn:resource:some-prod-resource"}, PRODUCTION, None),
        (
            {"BRIDGE_FILTER_RESOURCES": "urn:altinn:resource:some-prod-resource"},
            CORRESPONDENCE_PUBLISHED,
            "resource",
        ),
        ({"BRIDGE_FILTER_ALTERNATIVESUBJECTS": "/organisation/"}, CORRESPONDENCE_PUBLISHED, None),
        ({"BRIDGE_FILTER_ALTERNATIVESUBJECTS": "/organisation/"}, PERSON, "alternativesubject"),
        (
            {"BRIDGE_FILTER_ALTERNATIVESUBJECTS": "/organisation/"},
            NO_ALTERNATIVESUBJECT,
            "alternativesubject",
        ),
        ({"BRIDGE_FILTER_ALTERNATIVESUBJECTS": "/organisation/310654302"}, CORRESPONDENCE_PUBLISHED, None),
        (
            {"BRIDGE_FILTER_ALTERNATIVESUBJECTS": "/organisation/310654302"},
            ATTACHMENT_INITIALIZED,
            "alternativesubject",
        ),
        ({"BRIDGE_FILTER_ALTERNATIVESUBJECTS": "/organisation/1234*"}, LEGACY_SUBJECT, None),
        ({"BRIDGE_FILTER_TYPES": "correspondencepublished"}, CORRESPONDENCE_PUBLISHED, None),
        ({"BRIDGE_FILTER_TYPES": "correspondencepublished"}, ATTACHMENT_INITIALIZED, "type"),
        ({"BRIDGE_FILTER_TYPES": "correspondencepublished"}, UNKNOWN_TYPE_FIXTURE, "type"),
        (
            {"BRIDGE_FILTER_TYPES": "no.altinn.correspondence.attachmentinitialized"},
            ATTACHMENT_INITIALIZED,
            None,
        ),
        (
            {"BRIDGE_FILTER_TYPES": "CorrespondencePublished,attachmentpublished"},
            CORRESPONDENCE_PUBLISHED,
            None,
        ),
        (
            {"BRIDGE_FILTER_SOURCES": "tt02", "BRIDGE_FILTER_TYPES": "attachmentpublished"},
            PRODUCTION,
            "source",
        ),
    ],
    ids=[
        "source-tt02-keeps-tt02",
        "source-tt02-drops-production",
        "source-tt02-drops-dev-environment",
        "source-production-keeps-production",
        "source-production-drops-tt02",
        "source-prefix-at-slash-boundary",
        "source-url-keeps-below",
        "source-url-drops-sibling",
        "resource-keeps-listed",
        "resource-drops-other",
        "altsubject-prefix-keeps-organisation",
        "altsubject-prefix-drops-person",
        "altsubject-drops-missing",
        "altsubject-exact-keeps",
        "altsubject-exact-drops-other",
        "altsubject-star-prefix",
        "types-short-keeps",
        "types-short-drops-other",
        "types-drop-unknown",
        "types-full-keeps",
        "types-case-insensitive",
        "source-checked-first",
    ],
)
async def test_filters(
    make_client, fake_publisher, registry, *, env: dict[str, str], body: Path | bytes, filtered_by: str | None
):
    raw = body_bytes(body)
    event = attributes(raw)

    answer = await _outcome(make_client, raw, env)

    if filtered_by is None:
        assert answer["outcome"] == "published"
        assert [r.value for r in fake_publisher.records] == [raw]
        assert event_counts(registry) == {("published", type_label(event["type"])): 1}
    else:
        assert answer == {"outcome": "filtered", "event_id": event["id"], "filtered_by": filtered_by}
        assert fake_publisher.records == []
        assert event_counts(registry) == {("filtered", type_label(event["type"])): 1}


async def test_filters_never_drop_the_validation_handshake(make_client, fake_publisher, registry):
    env = {
        "BRIDGE_FILTER_SOURCES": "production",
        "BRIDGE_FILTER_RESOURCES": "urn:altinn:resource:some-prod-resource",
        "BRIDGE_FILTER_ALTERNATIVESUBJECTS": "/organisation/",
        "BRIDGE_FILTER_TYPES": "correspondencepublished",
    }

    answer = await _outcome(make_client, VALIDATION_FIXTURE, env)

    assert answer["outcome"] == "validation"
    assert fake_publisher.records == []
    assert event_counts(registry) == {("validation", "validatesubscription"): 1}

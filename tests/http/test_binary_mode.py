"""Events in HTTP binary content mode: attributes in ``ce-*`` headers, ``data`` in the body.

docs/http-api.md, "Endpoints": one event in binary mode (any ``Content-Type``, detected by
``ce-specversion``) is accepted like a structured one; the record value is the event
as structured JSON. CloudEvents HTTP binding 1.0.2, 3.1: header values are
percent-decoded (space, ``"``, ``%`` and non-ASCII are encoded as UTF-8 ``%XY``;
unnecessary encoding is accepted, lower-case hex too), ``Content-Type`` is
``datacontenttype`` and the body is ``data``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.support.events import (
    ALTINN_CONTENT_TYPE,
    DEADLETTER_TOPIC,
    RECORD_CONTENT_TYPE,
    VALID_EVENTS,
    VALIDATION_FIXTURE,
    attributes,
    body_bytes,
    default_topic,
    fixture_ids,
    type_label,
    valid_fixture,
)
from tests.support.http import EVENTS_PATH, json_answer, post_event, problem_answer
from tests.support.metrics import event_counts

PUBLISHED_FIXTURE = valid_fixture("06-correspondencepublished")
PUBLISHED_TOPIC = "altinn.correspondence.correspondencepublished"


def percent_encoded(value: str) -> str:
    """``value`` as a binary-mode header value (HTTP binding 3.1.3.2): only what must be encoded."""
    return "".join(
        "".join(f"%{b:02X}" for b in char.encode()) if char in ' "%' or not "!" <= char <= "~" else char
        for char in value
    )


def ce_headers(attrs: dict[str, Any], **changes: str | None) -> dict[str, str]:
    """The ``ce-*`` headers of ``attrs`` with ``changes`` (``None`` drops one); values sent as given."""
    merged: dict[str, Any] = {**attrs, **changes}
    return {f"ce-{name}": percent_encoded(value) for name, value in merged.items() if value is not None}


async def post_binary(
    client: TestClient, headers: dict[str, str], body: bytes | None = None, content_type: str | None = None
) -> ClientResponse:
    """POST one binary-mode event; no ``Content-Type`` unless given."""
    sent = dict(headers)
    if content_type is not None:
        sent["Content-Type"] = content_type
    skip = [] if content_type is not None else ["Content-Type"]
    return await client.post(EVENTS_PATH, data=body, headers=sent, skip_auto_headers=skip)


def _value(record) -> dict[str, Any]:
    value = orjson.loads(record.value)
    assert isinstance(value, dict)
    return value


# --- every valid fixture, as Altinn's events would look in binary mode -----------------------


@pytest.mark.parametrize("path", VALID_EVENTS, ids=fixture_ids(VALID_EVENTS))
async def test_binary_event_is_published_as_structured_json(
    make_client, fake_publisher, registry, path: Path
):
    client = await make_client()
    attrs = attributes(path)
    topic = default_topic(attrs["type"])

    answer = await json_answer(await post_binary(client, ce_headers(attrs)))

    assert answer == {
        "outcome": "published",
        "event_id": attrs["id"],
        "topic": topic,
        "partition": 0,
        "offset": 0,
    }
    (record,) = fake_publisher.records
    assert record.topic == topic
    assert record.key == attrs["resourceinstance"].encode()
    assert _value(record) == attrs  # no body, no content type: no data, no datacontenttype
    assert record.headers == [("content-type", RECORD_CONTENT_TYPE)]
    assert event_counts(registry) == {("published", type_label(attrs["type"])): 1}


async def test_json_body_becomes_data(make_client, fake_publisher):
    client = await make_client()
    attrs = attributes(PUBLISHED_FIXTURE)
    data = {"message": "Hei på deg", "count": 3, "tags": ["a", "b"], "ok": True}

    answer = await json_answer(
        await post_binary(client, ce_headers(attrs), orjson.dumps(data), "application/json")
    )

    assert answer["outcome"] == "published"
    (record,) = fake_publisher.records
    assert record.key == attrs["resourceinstance"].encode()
    assert _value(record) == {**attrs, "datacontenttype": "application/json", "data": data}


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "text/json", "application/vnd.acme+json"],
    ids=["json-charset", "text-json", "plus-json"],
)
async def test_every_json_media_type_gives_json_data(make_client, fake_publisher, content_type: str):
    client = await make_client()
    attrs = attributes(PUBLISHED_FIXTURE)

    await json_answer(await post_binary(client, ce_headers(attrs), b'{"a": [1, 2]}', content_type))

    (record,) = fake_publisher.records
    assert _value(record)["data"] == {"a": [1, 2]}
    assert _value(record)["datacontenttype"] == content_type


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"hello, world"),
        ("application/octet-stream", bytes(range(256))),
        ("application/xml", b'<much wow="xml"/>'),
    ],
    ids=["text", "octets", "xml"],
)
async def test_other_bodies_become_data_base64(make_client, fake_publisher, content_type: str, body: bytes):
    # Binary mode is told by ce-specversion, whatever the content type (text/plain alone is 415).
    client = await make_client()
    attrs = attributes(PUBLISHED_FIXTURE)

    answer = await json_answer(await post_binary(client, ce_headers(attrs), body, content_type))

    assert answer["outcome"] == "published"
    (record,) = fake_publisher.records
    value = _value(record)
    assert value == {**attrs, "datacontenttype": content_type, "data_base64": value["data_base64"]}
    assert base64.b64decode(value["data_base64"]) == body


async def test_header_names_are_case_insensitive(make_client, fake_publisher):
    client = await make_client()
    attrs = attributes(PUBLISHED_FIXTURE)
    headers = {name.upper().replace("CE-", "Ce-"): value for name, value in ce_headers(attrs).items()}

    answer = await json_answer(await post_binary(client, headers))

    assert answer["outcome"] == "published"
    assert _value(fake_publisher.records[0]) == attrs


# --- percent-encoded header values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "attribute"),
    [
        ("Acme%20AS", "Acme AS"),
        ("100%25%20sikker", "100% sikker"),
        ("%22quoted%22", '"quoted"'),
        ("bl%C3%A5b%C3%A6r%20%E2%82%AC%20%F0%9F%98%80", "blåbær € 😀"),
        ("bl%c3%a5b%c3%a6r", "blåbær"),
        (
            "urn%3Aaltinn%3Aorganization%3Aidentifier-no%3A310654302",
            "urn:altinn:organization:identifier-no:310654302",
        ),
        (
            "urn:altinn:organization:identifier-no:310654302",
            "urn:altinn:organization:identifier-no:310654302",
        ),
        ("a+b", "a+b"),
    ],
    ids=[
        "space",
        "percent",
        "double-quote",
        "utf8",
        "lower-case-hex",
        "needlessly-encoded",
        "not-encoded",
        "plus-is-not-space",
    ],
)
async def test_header_values_are_percent_decoded(make_client, fake_publisher, sent: str, attribute: str):
    client = await make_client()
    attrs = attributes(PUBLISHED_FIXTURE)
    headers = {**ce_headers(attrs), "ce-subject": sent}

    await json_answer(await post_binary(client, headers))

    assert _value(fake_publisher.records[0])["subject"] == attribute


async def test_percent_decoding_is_a_single_round(make_client, fake_publisher):
    client = await make_client()
    headers = {**ce_headers(attributes(PUBLISHED_FIXTURE)), "ce-subject": "a%2520b"}

    await json_answer(await post_binary(client, headers))

    assert _value(fake_publisher.records[0])["subject"] == "a%20b"


async def test_encoded_attributes_route_and_key_on_their_decoded_values(make_client, fake_publisher):
    client = await make_client()
    attrs = {**attributes(PUBLISHED_FIXTURE), "resourceinstance": "bestilling æøå", "id": "id with space"}

    answer = await json_answer(await post_binary(client, ce_headers(attrs)))

    assert answer["event_id"] == "id with space"
    (record,) = fake_publisher.records
    assert record.key == "bestilling æøå".encode()
    assert orjson.loads(record.value)["id"] == "id with space"


async def test_invalid_utf8_in_a_percent_encoded_value_is_not_published(make_client, fake_publisher):
    # HTTP binding 3.1.3.2: "encoded byte sequences which are invalid in UTF-8 MUST be rejected
    # (for example, "%C0%A0" is an overlong encoding of U+0020)". Rejected here means
    # dead-lettered (the default policy), never published to the event topic.
    client = await make_client()
    headers = {**ce_headers(attributes(PUBLISHED_FIXTURE)), "ce-subject": "a%C0%A0b"}

    answer = await json_answer(await post_binary(client, headers))

    assert answer["outcome"] == "dead_lettered"
    assert [r.topic for r in fake_publisher.records] == [DEADLETTER_TOPIC]


async def test_double_quoted_header_value_is_unquoted(make_client, fake_publisher):
    # HTTP binding 3.1.3.2: values "MUST first be unescaped with respect to double-quoted
    # strings" (RFC 7230 3.2.6), for senders following older versions of the binding.
    client = await make_client()
    headers = {**ce_headers(attributes(PUBLISHED_FIXTURE)), "ce-subject": '"Acme AS \\"Nord\\""'}

    await json_answer(await post_binary(client, headers))

    assert _value(fake_publisher.records[0])["subject"] == 'Acme AS "Nord"'


# --- invalid binary-mode events ---------------------------------------------------------------------


async def test_invalid_json_body_with_json_content_type_is_dead_lettered(
    make_client, fake_publisher, registry
):
    client = await make_client()
    attrs = attributes(PUBLISHED_FIXTURE)

    answer = await json_answer(
        await post_binary(client, ce_headers(attrs), b"{not json", ALTINN_CONTENT_TYPE)
    )

    assert answer["outcome"] == "dead_lettered"
    assert answer["reason"] == "invalid_json"
    assert answer["topic"] == DEADLETTER_TOPIC
    (record,) = fake_publisher.records
    assert record.topic == DEADLETTER_TOPIC
    assert record.value == b"{not json"
    assert record.header("content-type") == ALTINN_CONTENT_TYPE.encode()
    assert record.header("dlq_reason") == b"invalid_json"
    assert event_counts(registry) == {("dead_lettered", "other"): 1}


@pytest.mark.parametrize(
    ("missing", "reason"),
    [("id", "missing_attribute"), ("source", "missing_attribute"), ("resourceinstance", "missing_attribute")],
    ids=str,
)
async def test_missing_attribute_header_is_dead_lettered_naming_it(
    make_client, fake_publisher, registry, missing: str, reason: str
):
    client = await make_client()
    attrs = attributes(PUBLISHED_FIXTURE)

    answer = await json_answer(await post_binary(client, ce_headers(attrs, **{missing: None})))

    assert answer["outcome"] == "dead_lettered"
    assert (answer["reason"], answer["field"]) == (reason, missing)
    assert f"'{missing}'" in answer["detail"]
    (record,) = fake_publisher.records
    assert record.topic == DEADLETTER_TOPIC
    assert record.header("dlq_field") == missing.encode()
    # Nothing the sender sent is lost: the dead letter carries every attribute it had.
    assert _value(record) == {k: v for k, v in attrs.items() if k != missing}
    assert event_counts(registry) == {("dead_lettered", "other"): 1}


async def test_wrong_specversion_header_is_dead_lettered(make_client, fake_publisher):
    client = await make_client()

    answer = await json_answer(
        await post_binary(client, ce_headers(attributes(PUBLISHED_FIXTURE), specversion="0.3"))
    )

    assert (answer["outcome"], answer["reason"]) == ("dead_lettered", "unsupported_specversion")
    assert [r.topic for r in fake_publisher.records] == [DEADLETTER_TOPIC]


#: case -> (header changes, body, content type, problem reason, problem field)
REJECTED: dict[str, tuple[dict[str, str | None], bytes | None, str | None, str, str | None]] = {
    "missing-id": ({"id": None}, None, None, "missing_attribute", "id"),
    "invalid-json-data": ({}, b"{oops", "application/json", "invalid_json", None),
    "bad-time": ({"time": "yesterday"}, None, None, "invalid_attribute", "time"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
async def test_reject_policy_answers_400(make_client, fake_publisher, registry, case: str):
    changes, body, content_type, reason, field = REJECTED[case]
    headers = ce_headers(attributes(PUBLISHED_FIXTURE), **changes)
    client = await make_client(BRIDGE_INVALID_EVENT_POLICY="reject")

    response = await post_binary(client, headers, body, content_type)
    problem = await problem_answer(response, 400, "invalid-event")

    assert problem["reason"] == reason
    assert problem.get("field") == field
    assert "Retry-After" not in response.headers
    assert fake_publisher.records == []
    assert event_counts(registry) == {("rejected", "other"): 1}


# --- binary mode meets the rest of the bridge -----------------------------------------------------------


async def test_validation_event_in_binary_mode_is_not_published(make_client, fake_publisher, registry):
    client = await make_client()
    attrs = attributes(VALIDATION_FIXTURE)

    answer = await json_answer(await post_binary(client, ce_headers(attrs)))

    assert answer == {"outcome": "validation", "event_id": attrs["id"]}
    assert fake_publisher.records == []
    assert event_counts(registry) == {("validation", "validatesubscription"): 1}


async def test_binary_redelivery_is_a_duplicate(make_client, fake_publisher, registry):
    client = await make_client()
    headers = ce_headers(attributes(PUBLISHED_FIXTURE))

    first = await json_answer(await post_binary(client, headers))
    second = await json_answer(await post_binary(client, headers))

    assert second == {**first, "outcome": "duplicate"}
    assert len(fake_publisher.records) == 1
    assert event_counts(registry) == {
        ("published", "correspondencepublished"): 1,
        ("duplicate", "correspondencepublished"): 1,
    }


async def test_same_event_structured_then_binary_is_a_duplicate(make_client, fake_publisher):
    client = await make_client()
    first = await json_answer(await post_event(client, PUBLISHED_FIXTURE))

    second = await json_answer(await post_binary(client, ce_headers(attributes(PUBLISHED_FIXTURE))))

    assert second == {**first, "outcome": "duplicate"}
    assert [r.value for r in fake_publisher.records] == [body_bytes(PUBLISHED_FIXTURE)]


async def test_filters_apply_to_binary_events(make_client, fake_publisher):
    client = await make_client(BRIDGE_FILTER_SOURCES="production")

    answer = await json_answer(await post_binary(client, ce_headers(attributes(PUBLISHED_FIXTURE))))

    assert answer["outcome"] == "filtered"
    assert fake_publisher.records == []


async def test_structured_event_with_optional_ce_headers_stays_structured(make_client, fake_publisher):
    # HTTP binding 3: a Content-Type starting with application/cloudevents means structured
    # mode, and 3.2.3: a structured message MAY carry the binary-mode ce-* headers as well.
    # The body is then the event itself, and the record value is the body as received.
    client = await make_client()
    raw = body_bytes(PUBLISHED_FIXTURE)

    answer = await json_answer(
        await post_binary(
            client,
            ce_headers(attributes(PUBLISHED_FIXTURE)),
            raw,
            "application/cloudevents+json; charset=utf-8",
        )
    )

    assert answer["outcome"] == "published"
    (record,) = fake_publisher.records
    assert record.value == raw


@pytest.mark.parametrize(
    ("content_type", "body", "value"),
    [
        ("text/plain", b"hello, world", b"hello, world"),
        ("application/octet-stream", bytes(range(256)), bytes(range(256))),
    ],
    ids=["text", "octets"],
)
async def test_binary_in_binary_out_keeps_the_bytes(
    make_client, fake_publisher, content_type: str, body: bytes, value: bytes
):
    # HTTP binary mode in, Kafka binary mode out: the body is the record value, byte for byte.
    client = await make_client(BRIDGE_RECORD_MODE="binary")
    attrs = attributes(PUBLISHED_FIXTURE)

    await json_answer(await post_binary(client, ce_headers(attrs), body, content_type))

    (record,) = fake_publisher.records
    assert record.topic == PUBLISHED_TOPIC
    assert record.key == attrs["resourceinstance"].encode()
    assert record.value == value
    assert dict(record.headers) == {
        "content-type": content_type.encode(),
        **{f"ce_{name}": str(attr).encode() for name, attr in attrs.items()},
    }


async def test_binary_in_binary_out_json_data(make_client, fake_publisher):
    client = await make_client(BRIDGE_RECORD_MODE="binary")
    data = {"message": "hei", "n": 1}

    await json_answer(
        await post_binary(
            client, ce_headers(attributes(PUBLISHED_FIXTURE)), orjson.dumps(data), "application/json"
        )
    )

    (record,) = fake_publisher.records
    assert orjson.loads(record.value) == data
    assert record.header("content-type") == b"application/json"

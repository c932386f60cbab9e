"""What is not a plain success: invalid bodies, Kafka failures, wrong paths, big bodies, personal data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from bridge.errors import PublishError
from tests.support.events import (
    ALTINN_CONTENT_TYPE,
    DEADLETTER_TOPIC,
    FIXTURES,
    INVALID,
    body_bytes,
    fixture_ids,
    valid_fixture,
)
from tests.support.http import (
    EVENTS_PATH,
    PROBLEM_CONTENT_TYPE,
    json_answer,
    post_event,
    problem_answer,
    retry_after_s,
)
from tests.support.logs import national_ids_in_fixtures
from tests.support.metrics import event_counts, sample

PUBLISHED_FIXTURE = valid_fixture("06-correspondencepublished")
PERSON_FIXTURE = valid_fixture("22-person-recipient-national-id")
PERSON_INVALID_FIXTURE = FIXTURES / "invalid" / "person-subject-national-id-as-time.json"

#: invalid fixture stem -> (dead-letter reason, field at fault, what the detail must say)
CAUSES: dict[str, tuple[str, str | None, str]] = {
    "bad-time": ("invalid_attribute", "time", "'time'"),
    "empty-id": ("invalid_attribute", "id", "'id'"),
    "json-array-on-single-endpoint": ("not_an_object", None, "array"),
    "missing-id": ("missing_attribute", "id", "'id'"),
    "missing-resourceinstance": ("missing_attribute", "resourceinstance", "'resourceinstance'"),
    "not-an-object": ("not_an_object", None, "one JSON object"),
    "not-json": ("invalid_json", None, "not valid JSON"),
    "person-subject-national-id-as-time": ("invalid_attribute", "time", "'time'"),
    "type-not-a-string": ("invalid_attribute", "type", "'type'"),
    "wrong-specversion": ("unsupported_specversion", "specversion", "'specversion'"),
}


def id_sent_in(raw: bytes) -> str | None:
    """The ``id`` an invalid body carried, if it had a usable one (the answer repeats it)."""
    try:
        attrs = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    sent = attrs.get("id") if isinstance(attrs, dict) else None
    return sent if isinstance(sent, str) and sent else None


def test_causes_cover_every_invalid_fixture():
    assert sorted(CAUSES) == sorted(p.stem for p in INVALID)
    # Most invalid fixtures carry an id that the answer must repeat; some cannot.
    assert 0 < sum(id_sent_in(body_bytes(p)) is not None for p in INVALID) < len(INVALID)


# --- invalid bodies: dead-letter policy (default) -------------------------------------


@pytest.mark.parametrize("path", INVALID, ids=fixture_ids(INVALID))
async def test_invalid_body_dead_lettered_and_acknowledged(make_client, fake_publisher, registry, path: Path):
    client = await make_client()
    raw = body_bytes(path)
    reason, field, says = CAUSES[path.stem]

    before = datetime.now(UTC)
    answer = await json_answer(await post_event(client, raw))
    after = datetime.now(UTC)

    assert answer["outcome"] == "dead_lettered"
    assert answer.get("event_id") == id_sent_in(raw)
    assert answer["reason"] == reason
    assert answer.get("field") == field
    assert says in answer["detail"]
    assert answer["topic"] == DEADLETTER_TOPIC
    (record,) = fake_publisher.records
    assert record.topic == DEADLETTER_TOPIC
    assert record.key is None
    assert record.value == raw
    headers = dict(record.headers)
    assert headers.pop("content-type") == ALTINN_CONTENT_TYPE.encode()
    assert headers.pop("dlq_reason") == reason.encode()
    assert headers.pop("dlq_detail").decode() == answer["detail"]
    if field is not None:
        assert headers.pop("dlq_field") == field.encode()
    received_at = headers.pop("dlq_received_at").decode()
    assert received_at.endswith("Z")
    assert before <= datetime.fromisoformat(received_at) <= after
    assert headers == {}, "unexpected dead-letter headers"
    assert event_counts(registry) == {("dead_lettered", "other"): 1}


async def test_dead_letter_keeps_the_request_content_type(make_client, fake_publisher):
    client = await make_client()

    await json_answer(await post_event(client, b"{oops", "application/cloudevents+json"))

    (record,) = fake_publisher.records
    assert record.header("content-type") == b"application/cloudevents+json"
    assert record.header("dlq_reason") == b"invalid_json"


async def test_dead_letter_topic_is_configurable(make_client, fake_publisher):
    client = await make_client(BRIDGE_TOPIC_DEADLETTER="acme.altinn.broken")

    answer = await json_answer(await post_event(client, b"{oops"))

    assert answer["topic"] == "acme.altinn.broken"
    assert [r.topic for r in fake_publisher.records] == ["acme.altinn.broken"]


# --- invalid bodies: reject policy ------------------------------------------------------


@pytest.mark.parametrize("path", INVALID, ids=fixture_ids(INVALID))
async def test_invalid_body_rejected_with_400_naming_the_cause(
    make_client, fake_publisher, registry, path: Path
):
    client = await make_client(BRIDGE_INVALID_EVENT_POLICY="reject")
    reason, field, says = CAUSES[path.stem]

    response = await post_event(client, path)
    problem = await problem_answer(response, 400, "invalid-event")

    assert says in problem["detail"]
    assert problem.get("event_id") == id_sent_in(body_bytes(path))
    assert problem["reason"] == reason
    assert problem.get("field") == field
    assert "Retry-After" not in response.headers  # a retry cannot help
    assert fake_publisher.records == []
    assert event_counts(registry) == {("rejected", "other"): 1}


# --- Kafka does not acknowledge -------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["timeout", "KafkaConnectionError", "NotLeaderForPartitionError", "not_connected"], ids=str
)
async def test_publish_failure_answered_503_for_a_retry(make_client, fake_publisher, registry, kind: str):
    fake_publisher.fail_with = PublishError(kind, f"Kafka said no ({kind})")
    client = await make_client()

    response = await post_event(client, PUBLISHED_FIXTURE)
    problem = await problem_answer(response, 503, "kafka-unavailable")

    assert retry_after_s(response) > 0
    assert f"Kafka said no ({kind})" in problem["detail"]
    assert fake_publisher.records == []
    assert event_counts(registry) == {("unavailable", "correspondencepublished"): 1}
    assert sample(registry, "altinn_bridge_kafka_producer_errors_total", error=kind) == 1
    assert sample(registry, "altinn_bridge_publish_duration_seconds_count", result="error") == 1
    assert sample(registry, "altinn_bridge_publish_duration_seconds_count", result="ok") == 0


async def test_altinn_retry_after_kafka_recovers_is_published(make_client, fake_publisher, registry):
    fake_publisher.fail_with = PublishError("timeout", "Kafka did not acknowledge within 10 s")
    client = await make_client()
    await problem_answer(await post_event(client, PUBLISHED_FIXTURE), 503, "kafka-unavailable")

    fake_publisher.fail_with = None
    answer = await json_answer(await post_event(client, PUBLISHED_FIXTURE))

    assert answer["outcome"] == "published"
    assert len(fake_publisher.records) == 1
    assert event_counts(registry) == {
        ("unavailable", "correspondencepublished"): 1,
        ("published", "correspondencepublished"): 1,
    }


@pytest.mark.parametrize("path", INVALID[:3], ids=fixture_ids(INVALID[:3]))
async def test_dead_letter_write_failure_answered_503(make_client, fake_publisher, registry, path: Path):
    fake_publisher.fail_with = PublishError("KafkaConnectionError", "no broker")
    client = await make_client()

    response = await post_event(client, path)
    await problem_answer(response, 503, "kafka-unavailable")

    assert retry_after_s(response) > 0
    assert fake_publisher.records == []
    assert event_counts(registry) == {("unavailable", "other"): 1}
    assert sample(registry, "altinn_bridge_kafka_producer_errors_total", error="KafkaConnectionError") == 1


async def test_unexpected_publisher_error_is_a_500_problem_not_a_2xx(make_client, fake_publisher, registry):
    fake_publisher.fail_with = RuntimeError("a bug in the adapter")
    client = await make_client()

    problem = await problem_answer(await post_event(client, PUBLISHED_FIXTURE), 500, "internal-error")

    assert "a bug in the adapter" not in problem["detail"]
    assert fake_publisher.records == []
    assert event_counts(registry) == {("error", "correspondencepublished"): 1}


# --- wrong paths and methods, bodies too large --------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("POST", "/api/v1/event"), ("POST", "/api/v1/events/extra"), ("GET", "/admin")],
    ids=["root", "singular", "below-events", "admin"],
)
async def test_unknown_path_is_404_problem(make_client, fake_publisher, method: str, path: str):
    client = await make_client()

    response = await client.request(method, path, data=body_bytes(PUBLISHED_FIXTURE))
    await problem_answer(response, 404, "not-found")

    assert fake_publisher.records == []


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", EVENTS_PATH, {"POST"}),
        ("PUT", EVENTS_PATH, {"POST"}),
        ("DELETE", EVENTS_PATH, {"POST"}),
        ("POST", "/healthz", {"GET", "HEAD"}),
        ("POST", "/metrics", {"GET", "HEAD"}),
    ],
    ids=["get-events", "put-events", "delete-events", "post-healthz", "post-metrics"],
)
async def test_wrong_method_is_405_problem_with_allow(
    make_client, fake_publisher, method: str, path: str, allowed: set[str]
):
    client = await make_client()

    response = await client.request(method, path)
    await problem_answer(response, 405, "method-not-allowed")

    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed
    assert fake_publisher.records == []


def _padded(body: bytes, size: int) -> bytes:
    assert len(body) <= size
    return body + b" " * (size - len(body))


async def test_body_over_the_limit_is_413_problem(make_client, fake_publisher, registry):
    client = await make_client(BRIDGE_MAX_BODY_BYTES="1024")

    problem = await problem_answer(
        await post_event(client, _padded(body_bytes(PUBLISHED_FIXTURE), 1025)),
        413,
        "payload-too-large",
    )

    assert "1024" in problem["detail"]
    assert fake_publisher.records == []
    assert event_counts(registry) == {("rejected", "other"): 1}


async def test_body_at_the_limit_is_published(make_client, fake_publisher):
    client = await make_client(BRIDGE_MAX_BODY_BYTES="1024")
    body = _padded(body_bytes(PUBLISHED_FIXTURE), 1024)

    answer = await json_answer(await post_event(client, body))

    assert answer["outcome"] == "published"
    assert [r.value for r in fake_publisher.records] == [body]


# --- personal data is not echoed ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "env"),
    [
        (PERSON_FIXTURE, {}),
        (PERSON_FIXTURE, {"BRIDGE_FILTER_ALTERNATIVESUBJECTS": "/organisation/"}),
        (PERSON_FIXTURE, {"BRIDGE_TOPIC_ROUTES": "*=altinn.all"}),
        (PERSON_INVALID_FIXTURE, {}),
        (PERSON_INVALID_FIXTURE, {"BRIDGE_INVALID_EVENT_POLICY": "reject"}),
    ],
    ids=["published", "filtered", "routed", "dead-lettered", "rejected"],
)
async def test_answers_and_metrics_never_carry_a_national_id(
    make_client, fake_publisher, path: Path, env: dict[str, str]
):
    national_ids = national_ids_in_fixtures()
    assert national_ids
    client = await make_client(**env)

    response = await post_event(client, path)
    text = await response.text()
    metrics = await (await client.get("/metrics")).text()

    assert response.status in (200, 400)
    assert response.content_type in ("application/json", PROBLEM_CONTENT_TYPE)
    leaked = {n for n in national_ids if n in text or n in str(dict(response.headers))}
    assert not leaked, f"answer echoes a national identity number: {text}"
    assert not {n for n in national_ids if n in metrics}
    # Kafka is the one place it belongs: the record keeps the event byte for byte.
    assert all(r.value == body_bytes(path) for r in fake_publisher.records)

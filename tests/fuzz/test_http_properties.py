"""Properties of the HTTP layer over generated requests, through aiohttp's test client.

Every generated combination of configuration, route, credentials, media type,
``ce-*`` headers and body is answered with a status below 500 (503 only where
the fake Kafka is down), never crashes, every non-2xx answer is an RFC 9457
problem, and every answer is what the OpenAPI document says (status, media
type, body schema, headers), whatever the configuration. On top, the outcomes the
docs/http-api.md promises: valid events are published once, bad credentials are 401, a
batch gets one result per event.
"""

from __future__ import annotations

import itertools
import string
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.events import VALIDATION_TYPE
from tests.fuzz import strategies
from tests.fuzz.harness import CONFIGURATIONS, KAFKA_DOWN, Answer, AppUnderTest, Harness
from tests.fuzz.support import TOKEN, TOKEN_PATH, FuzzStats, answer_is_acceptable, hypothesis_settings
from tests.support.http import EVENTS_PATH, PROBLEM_TYPE, assert_problem

pytestmark = pytest.mark.fuzz

HTTP = hypothesis_settings(600)

STRUCTURED = ("application/json", "application/json; charset=utf-8", "application/cloudevents+json")
BATCH = "application/cloudevents-batch+json"
KNOWN_MEDIA_TYPES = (*STRUCTURED, BATCH, "text/plain", "application/octet-stream", "application/xml")
#: Makes event ids unique across examples (hypothesis replays the same data when it shrinks).
UNIQUE = itertools.count()
#: Configurations that see arbitrary requests (the slow-client one is for the edge tests).
FUZZED = sorted(set(CONFIGURATIONS) - {"slow-clients"})


# --- what is sent -------------------------------------------------------------------

header_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), max_size=40
)  # what aiohttp's client will send (it refuses control characters)
#: Mostly the right token, so that most requests get past authentication.
credentials = st.sampled_from(
    ["bearer", "bearer", "path", "path", "path", "bearer-lower-case", "none", "wrong-bearer", "wrong-path"]
)
media_types = st.one_of(
    st.sampled_from([*STRUCTURED, *STRUCTURED, BATCH]),
    st.sampled_from(KNOWN_MEDIA_TYPES),
    st.none(),
    header_text,
)
ce_headers = st.dictionaries(
    st.sampled_from([f"ce-{a}" for a in (*strategies.ATTRIBUTES, "datacontenttype", "traceparent")]),
    st.one_of(header_text, header_text.map(strategies.percent_encoded), st.just("1.0")),
    max_size=6,
)
batch_bodies = st.lists(
    st.one_of(
        strategies.valid_events(),
        strategies.invalid_events().map(lambda case: case[0]),
        strategies.json_values,
    ),
    max_size=5,
).map(orjson.dumps)
bodies = st.one_of(strategies.garbage_bodies(), batch_bodies)


def route(credential: str) -> tuple[str, str, dict[str, str]]:
    """Path, OpenAPI path template and headers for a kind of credentials."""
    if credential == "path":
        return f"{EVENTS_PATH}/{TOKEN}", TOKEN_PATH, {}
    if credential == "wrong-path":
        return f"{EVENTS_PATH}/{'x' * 32}", TOKEN_PATH, {}
    headers = {
        "bearer": {"Authorization": f"Bearer {TOKEN}"},
        "bearer-lower-case": {"Authorization": f"bearer {TOKEN}"},
        "wrong-bearer": {"Authorization": f"Bearer {TOKEN}x"},
        "none": {},
    }[credential]
    return EVENTS_PATH, EVENTS_PATH, headers


def check_answer(
    stats: FuzzStats,
    app: AppUnderTest,
    answer: Answer,
    *,
    template: str,
    sent: dict[str, str],
    body: bytes,
    count: bool = True,
) -> bool:
    """The promises every answer keeps; False when it is an open known bug's 500 (counted).

    ``count``: this answer is a generated case of its own (not a second request of one).
    """
    if count:
        stats.case(answer.status)
    wire = [(k, v.encode()) for k, v in sent.items()]
    if not answer_is_acceptable(stats, answer.status, wire, body, kafka_down=app.kafka_down):
        return False
    if answer.status >= 400:
        assert_problem(answer.status, answer.headers.get("Content-Type", ""), answer.body)
    app.contract.check("POST", template, answer.status, answer.headers, answer.body)
    return True


# --- properties -----------------------------------------------------------------------


@settings(HTTP, max_examples=1500)
@given(
    config=st.sampled_from(FUZZED),
    credential=credentials,
    media_type=media_types,
    ce=ce_headers,
    body=bodies,
)
def test_any_request_is_answered_as_documented(
    harness: Harness,
    fuzz_stats: FuzzStats,
    *,
    config: str,
    credential: str,
    media_type: str | None,
    ce: dict[str, str],
    body: bytes,
) -> None:
    app = harness.apps[config]
    path, template, headers = route(credential)
    headers = {**headers, **ce}
    if media_type is not None:
        headers["Content-Type"] = media_type
    answer = harness.request(app, "POST", path, headers, body)
    if not check_answer(fuzz_stats, app, answer, template=template, sent=headers, body=body):
        return
    if credential.startswith(("wrong", "none")):
        assert answer.status == 401, answer  # credentials are checked before anything else
        return
    assert answer.status != 401, answer
    if media_type in KNOWN_MEDIA_TYPES and media_type != BATCH and "ce-specversion" not in ce:
        assert (answer.status == 415) == (media_type not in STRUCTURED), answer


@settings(HTTP)
@given(event=strategies.valid_events(), as_altinn=st.booleans())
def test_a_valid_event_is_published_once(
    harness: Harness, fuzz_stats: FuzzStats, event: dict[str, Any], *, as_altinn: bool
) -> None:
    app = harness.apps["default"]
    event = {**event, "id": f"{event['id']}-{next(UNIQUE)}"}  # never seen before, also when replayed
    body = orjson.dumps(event)
    headers = {
        "Content-Type": "application/json; charset=utf-8" if as_altinn else "application/cloudevents+json"
    }
    path = f"{EVENTS_PATH}/{TOKEN}"
    first = harness.request(app, "POST", path, headers, body)
    if not check_answer(fuzz_stats, app, first, template=TOKEN_PATH, sent=headers, body=body):
        return
    outcome = orjson.loads(first.body)
    if event["type"].lower() == VALIDATION_TYPE:
        assert outcome == {"outcome": "validation", "event_id": event["id"]}
        return
    assert first.status == 200, first
    assert outcome["outcome"] == "published", outcome
    record = app.publisher.records[-1]
    assert (record.topic, record.value, record.key) == (
        outcome["topic"],
        body,
        event["resourceinstance"].encode(),
    )
    again = harness.request(app, "POST", path, headers, body)
    check_answer(fuzz_stats, app, again, template=TOKEN_PATH, sent=headers, body=body, count=False)
    assert orjson.loads(again.body) == {**outcome, "outcome": "duplicate"}
    assert app.publisher.records[-1] is record  # not published again


@settings(HTTP, max_examples=500)
@given(
    config=st.sampled_from(["default", "reject", "small-limits", "kafka-down"]),
    items=st.lists(
        st.one_of(
            strategies.valid_events(),
            strategies.invalid_events().map(lambda case: case[0]),
            strategies.json_values,
        ),
        max_size=6,
    ),
)
def test_a_batch_gets_one_result_per_event(
    harness: Harness, fuzz_stats: FuzzStats, config: str, items: list[Any]
) -> None:
    app = harness.apps[config]
    body = orjson.dumps(items)
    headers = {"Content-Type": BATCH, "Authorization": f"Bearer {TOKEN}"}
    answer = harness.request(app, "POST", EVENTS_PATH, headers, body)
    if not check_answer(fuzz_stats, app, answer, template=EVENTS_PATH, sent=headers, body=body):
        return
    limit = app.settings.http
    if len(body) > limit.max_batch_bytes or len(items) > limit.max_batch_events:
        assert answer.status == 413, answer
        return
    answer_body = orjson.loads(answer.body)
    assert answer_body["count"] == len(items)
    assert [r["index"] for r in answer_body["results"]] == list(range(len(items)))
    if answer.status == 200:
        assert answer_body["outcome"] == "accepted"
    elif answer.status == 503:
        assert config in KAFKA_DOWN
        assert answer_body["type"] == PROBLEM_TYPE + "batch-incomplete"
    else:
        assert (answer.status, config) == (400, "reject"), answer
        assert answer_body["type"] == PROBLEM_TYPE + "batch-rejected"


@settings(HTTP, max_examples=400)
@given(body=bodies, media_type=st.sampled_from(STRUCTURED))
def test_with_kafka_down_what_needs_kafka_is_503_and_retryable(
    harness: Harness, fuzz_stats: FuzzStats, body: bytes, media_type: str
) -> None:
    app = harness.apps["kafka-down"]
    headers = {"Content-Type": media_type, "Authorization": f"Bearer {TOKEN}"}
    answer = harness.request(app, "POST", EVENTS_PATH, headers, body)
    if not check_answer(fuzz_stats, app, answer, template=EVENTS_PATH, sent=headers, body=body):
        return
    if answer.status == 200:
        assert orjson.loads(answer.body)["outcome"] == "validation", answer
        return
    assert answer.status == 503, answer
    assert int(answer.headers["Retry-After"]) > 0
    assert orjson.loads(answer.body)["type"] == PROBLEM_TYPE + "kafka-unavailable"


# --- raw bytes on the wire --------------------------------------------------------------

header_bytes = st.one_of(
    st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    strategies.invalid_utf8,
)
header_names_raw = st.one_of(
    st.sampled_from(
        [b"ce-specversion", b"ce-id", b"ce-source", b"ce-type", b"ce-data_base64", b"Content-Type"]
    ),
    st.binary(min_size=1, max_size=12).filter(lambda b: b":" not in b and b"\r" not in b and b"\n" not in b),
    st.text(string.ascii_letters + "-", min_size=1, max_size=12).map(str.encode),
)


@settings(HTTP)
@given(
    extra=st.lists(st.tuples(header_names_raw, header_bytes), max_size=6),
    binary=st.booleans(),
    body=bodies,
)
def test_any_header_bytes_get_an_answer_that_is_not_a_server_error(
    harness: Harness, fuzz_stats: FuzzStats, extra: list[tuple[bytes, bytes]], *, binary: bool, body: bytes
) -> None:
    app = harness.apps["default"]
    headers = [(b"Host", b"fuzz"), (b"Authorization", b"Bearer " + TOKEN.encode())]
    if binary:
        headers.append((b"ce-specversion", b"1.0"))
    headers += extra
    headers += [(b"Content-Length", str(len(body)).encode()), (b"Connection", b"close")]
    request = b"POST /api/v1/events HTTP/1.1\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    answer = harness.raw(app, request + b"\r\n" + body)
    assert answer is not None, "no answer within 5 s"
    fuzz_stats.case(answer.status)
    wire = [(n.decode("latin-1"), v) for n, v in headers]
    if not answer_is_acceptable(fuzz_stats, answer.status, wire, body):
        return
    if answer.status == 400 and answer.headers.get("Content-Type", "").startswith("text/plain"):
        return  # refused by aiohttp's HTTP parser, before the application: as documented
    if answer.status >= 400:
        assert_problem(answer.status, answer.headers.get("Content-Type", ""), answer.body)
    app.contract.check("POST", EVENTS_PATH, answer.status, answer.headers, answer.body)

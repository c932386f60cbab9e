"""The hostile inputs issue 4 names, one by one, with the exact answer each gets.

Invalid UTF-8, deeply nested JSON, huge numbers, duplicate keys, 100 KiB
strings, wrong JSON types in every attribute, huge headers, slow clients. Each
answer is also checked against the OpenAPI document and, when not 2xx, as an
RFC 9457 problem.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from tests.fuzz.harness import Answer, AppUnderTest, Harness, read_answer
from tests.fuzz.support import TOKEN, FuzzStats
from tests.support.events import VALID
from tests.support.http import EVENTS_PATH, PROBLEM_TYPE, assert_problem

pytestmark = pytest.mark.fuzz

EVENT: dict[str, Any] = orjson.loads((VALID[5]).read_bytes())  # 06-correspondencepublished
HUNDRED_KIB = "x" * (100 * 1024)
BATCH = "application/cloudevents-batch+json"


def post(
    harness: Harness,
    stats: FuzzStats,
    config: str,
    body: bytes,
    content_type: str = "application/json; charset=utf-8",
) -> tuple[Answer, dict[str, Any]]:
    """POST ``body`` as Altinn does (token in the path); the answer, checked, and its JSON body."""
    app = harness.apps[config]
    headers = {"Content-Type": content_type}
    answer = harness.request(app, "POST", f"{EVENTS_PATH}/{TOKEN}", headers, body)
    stats.case(answer.status)
    if answer.status >= 400:
        assert_problem(answer.status, answer.headers["Content-Type"], answer.body)
    app.contract.check("POST", EVENTS_PATH + "/{token}", answer.status, answer.headers, answer.body)
    return answer, orjson.loads(answer.body)


def with_raw(name: str, raw: bytes, event_id: str = EVENT["id"]) -> bytes:
    """The fixture event (with ``event_id``) and attribute ``name`` as the raw JSON text ``raw``, last."""
    event = {k: v for k, v in {**EVENT, "id": event_id}.items() if k != name}
    return orjson.dumps(event)[:-1] + b',"' + name.encode() + b'":' + raw + b"}"


# --- bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"], ids=lambda b: b.hex()
)
def test_invalid_utf8_is_dead_lettered_or_rejected(
    harness: Harness, fuzz_stats: FuzzStats, bad: bytes
) -> None:
    body = with_raw("subject", b'"urn:' + bad + b'"')
    answer, outcome = post(harness, fuzz_stats, "default", body)
    assert (answer.status, outcome["outcome"], outcome["reason"]) == (200, "dead_lettered", "invalid_json")
    assert harness.apps["default"].publisher.records[-1].value == body  # the bytes as received
    answer, problem = post(harness, fuzz_stats, "reject", body)
    assert (answer.status, problem["type"], problem["reason"]) == (
        400,
        PROBLEM_TYPE + "invalid-event",
        "invalid_json",
    )


def test_100k_levels_of_nesting(harness: Harness, fuzz_stats: FuzzStats) -> None:
    deep = b"[" * 100_000
    answer, problem = post(harness, fuzz_stats, "default", deep)
    assert (answer.status, problem["type"]) == (413, PROBLEM_TYPE + "payload-too-large")  # over 64 KiB
    answer, outcome = post(harness, fuzz_stats, "large-limits", deep)
    assert (answer.status, outcome["outcome"], outcome["reason"]) == (200, "dead_lettered", "invalid_json")
    assert "depth" in outcome["detail"]
    _, outcome = post(harness, fuzz_stats, "large-limits", b'{"a":' * 100_000)
    assert (outcome["outcome"], outcome["reason"]) == ("dead_lettered", "invalid_json")
    answer, problem = post(harness, fuzz_stats, "default", deep, BATCH)
    assert (answer.status, problem["type"]) == (400, PROBLEM_TYPE + "invalid-batch")


def test_nesting_within_the_limit_is_fine_in_data(harness: Harness, fuzz_stats: FuzzStats) -> None:
    body = with_raw("data", b"[" * 1000 + b"]" * 1000, event_id="nesting-1000")
    answer, outcome = post(harness, fuzz_stats, "default", body)
    assert (answer.status, outcome["outcome"]) == (200, "published")


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" + b"0" * 400])
def test_numbers_beyond_a_double_are_not_json_here(
    harness: Harness, fuzz_stats: FuzzStats, number: bytes
) -> None:
    answer, outcome = post(harness, fuzz_stats, "default", with_raw("data", number))
    assert (answer.status, outcome["outcome"], outcome["reason"]) == (200, "dead_lettered", "invalid_json")


def test_big_integers_are_kept_as_sent(harness: Harness, fuzz_stats: FuzzStats) -> None:
    body = with_raw("data", str(2**70).encode(), event_id="big-integer-1")
    answer, outcome = post(harness, fuzz_stats, "default", body)
    assert (answer.status, outcome["outcome"]) == (200, "published")
    assert harness.apps["default"].publisher.records[-1].value == body  # not re-encoded
    answer, outcome = post(harness, fuzz_stats, "default", with_raw("specversion", str(2**70).encode()))
    assert (outcome["outcome"], outcome["reason"], outcome["field"]) == (
        "dead_lettered",
        "invalid_attribute",
        "specversion",
    )


def test_of_duplicate_keys_the_last_counts(harness: Harness, fuzz_stats: FuzzStats) -> None:
    body = b'{"id":12,' + orjson.dumps({**EVENT, "id": "duplicate-keys-1"})[1:]
    answer, outcome = post(harness, fuzz_stats, "default", body)
    assert (answer.status, outcome["outcome"], outcome["event_id"]) == (200, "published", "duplicate-keys-1")
    body = orjson.dumps({**EVENT, "id": "duplicate-keys-2"})[:-1] + b',"specversion":"0.3"}'
    answer, outcome = post(harness, fuzz_stats, "default", body)
    assert (outcome["outcome"], outcome["reason"]) == ("dead_lettered", "unsupported_specversion")


@pytest.mark.parametrize(
    "name", ["id", "source", "type", "resource", "resourceinstance", "subject", "alternativesubject", "x"]
)
def test_100_kib_strings(harness: Harness, fuzz_stats: FuzzStats, name: str) -> None:
    event = {**EVENT, "id": f"long-{name}", name: HUNDRED_KIB}
    body = orjson.dumps(event)
    answer, problem = post(harness, fuzz_stats, "default", body)
    assert (answer.status, problem["type"]) == (413, PROBLEM_TYPE + "payload-too-large")
    answer, outcome = post(harness, fuzz_stats, "large-limits", body)
    assert (answer.status, outcome["outcome"], outcome["event_id"]) == (200, "published", event["id"])
    answer, accepted = post(harness, fuzz_stats, "default", orjson.dumps([event]), BATCH)
    assert (answer.status, accepted["outcomes"]) == (200, {"published": 1})


def test_a_100_kib_invalid_time_is_shortened_in_the_answer(harness: Harness, fuzz_stats: FuzzStats) -> None:
    _, outcome = post(harness, fuzz_stats, "large-limits", orjson.dumps({**EVENT, "time": HUNDRED_KIB}))
    assert (outcome["outcome"], outcome["field"]) == ("dead_lettered", "time")
    assert len(outcome["detail"]) < 200


WRONG_TYPES = {
    "number": 1.5,
    "integer": 7,
    "true": True,
    "false": False,
    "object": {"a": 1},
    "array": ["1.0"],
}


@pytest.mark.parametrize("kind", WRONG_TYPES)
@pytest.mark.parametrize(
    "name",
    [
        "specversion",
        "id",
        "source",
        "type",
        "resource",
        "resourceinstance",
        "time",
        "subject",
        "alternativesubject",
        "data_base64",
    ],
)
def test_wrong_json_types_in_every_attribute(
    harness: Harness, fuzz_stats: FuzzStats, name: str, kind: str
) -> None:
    body = orjson.dumps({**EVENT, name: WRONG_TYPES[kind]})
    answer, outcome = post(harness, fuzz_stats, "default", body)
    assert (answer.status, outcome["outcome"], outcome["reason"], outcome["field"]) == (
        200,
        "dead_lettered",
        "invalid_attribute",
        name,
    )
    answer, problem = post(harness, fuzz_stats, "reject", body)
    assert (answer.status, problem["field"]) == (400, name)


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type", "resource", "resourceinstance"])
def test_null_in_a_required_attribute_is_missing(harness: Harness, fuzz_stats: FuzzStats, name: str) -> None:
    answer, outcome = post(harness, fuzz_stats, "default", orjson.dumps({**EVENT, name: None}))
    assert answer.status == 200
    assert (outcome["outcome"], outcome["reason"], outcome["field"]) == (
        "dead_lettered",
        "missing_attribute",
        name,
    )


# --- headers --------------------------------------------------------------------------------


def raw_request(path: bytes = b"/healthz", headers: bytes = b"", method: bytes = b"GET") -> bytes:
    return method + b" " + path + b" HTTP/1.1\r\nHost: fuzz\r\n" + headers + b"Connection: close\r\n\r\n"


HUGE_HEADERS = {
    "value 20 KiB": raw_request(headers=b"X-Big: " + b"a" * 20_000 + b"\r\n"),
    "name 9 KiB": raw_request(headers=b"X-" + b"n" * 9_000 + b": 1\r\n"),
    "200 headers": raw_request(headers=b"".join(b"X-H%d: v\r\n" % i for i in range(200))),
    "URL 10 KiB": raw_request(path=b"/api/v1/events/" + b"t" * 10_000, method=b"POST"),
    "token 10 KiB": raw_request(
        headers=b"Authorization: Bearer " + b"t" * 10_000 + b"\r\n", path=b"/api/v1/events", method=b"POST"
    ),
}


@pytest.mark.parametrize("request_bytes", HUGE_HEADERS.values(), ids=HUGE_HEADERS.keys())
def test_huge_headers_are_refused_by_the_http_parser_with_400(
    harness: Harness, fuzz_stats: FuzzStats, request_bytes: bytes
) -> None:
    app = harness.apps["default"]
    answer = harness.raw(app, request_bytes)
    assert answer is not None
    fuzz_stats.case(answer.status)
    # What really happens: aiohttp's parser (limits 8190 bytes per line, 128 headers) answers
    # 400 text/plain before the application; not 431, and never a 5xx.
    assert answer.status == 400, answer
    assert answer.headers["Content-Type"].startswith("text/plain")
    after = harness.raw(app, raw_request())
    assert after is not None
    assert after.status == 200


def test_headers_just_under_the_limit_reach_the_application(harness: Harness, fuzz_stats: FuzzStats) -> None:
    app = harness.apps["default"]
    answer = harness.raw(app, raw_request(headers=b"X-Big: " + b"a" * 8000 + b"\r\n"))
    assert answer is not None
    fuzz_stats.case(answer.status)
    assert answer.status == 200


# --- slow clients -----------------------------------------------------------------------------


async def trickle(
    app: AppUnderTest, head: bytes, pieces: list[bytes], every_s: float, limit_s: float
) -> tuple[Answer | None, float, bool]:
    """Send ``head``, then one piece every ``every_s``, until an answer comes (or ``limit_s``).

    Returns the answer, when it came (seconds after the head), and whether the
    server closed the connection once the client stopped sending (aiohttp first
    reads what is left of the body, for up to 10 s, so the client half-closes).
    """
    reader, writer = await asyncio.open_connection(*app.address)
    started = time.monotonic()
    writer.write(head)
    answer_task = asyncio.ensure_future(read_answer(reader))
    try:
        for piece in pieces:
            done, _ = await asyncio.wait({answer_task}, timeout=every_s)
            if done:
                break
            writer.write(piece)
        try:
            answer = await asyncio.wait_for(answer_task, max(limit_s - (time.monotonic() - started), 0.1))
        except TimeoutError:
            return None, time.monotonic() - started, False
        took = time.monotonic() - started
        writer.write_eof()
        try:
            closed = await asyncio.wait_for(reader.read(), 2) == b""
        except TimeoutError:
            closed = False
        return answer, took, closed
    finally:
        answer_task.cancel()
        writer.close()


def body_head(length: int | None, content_type: bytes = b"application/json") -> bytes:
    framing = b"Transfer-Encoding: chunked\r\n" if length is None else b"Content-Length: %d\r\n" % length
    return (
        b"POST /api/v1/events/"
        + TOKEN.encode()
        + b" HTTP/1.1\r\nHost: fuzz\r\nContent-Type: "
        + content_type
        + b"\r\n"
        + framing
        + b"\r\n"
    )


SLOW = {
    "stalled": (body_head(100), [b"{"], 1.0),
    "trickling": (body_head(400), [b" "] * 40, 0.2),
    "chunked trickle": (body_head(None), [b"1\r\n \r\n"] * 40, 0.2),
    "batch trickle": (body_head(400, BATCH.encode()), [b" "] * 40, 0.2),
}


@pytest.mark.parametrize(("head", "pieces", "every_s"), SLOW.values(), ids=SLOW.keys())
def test_a_body_slower_than_the_read_timeout_gets_408(
    harness: Harness, fuzz_stats: FuzzStats, head: bytes, pieces: list[bytes], every_s: float
) -> None:
    app = harness.apps["slow-clients"]
    timeout_s = app.settings.http.read_timeout_s
    answer, took, closed = harness.run(trickle(app, head, pieces, every_s, limit_s=timeout_s + 5))
    assert answer is not None, "no answer"
    fuzz_stats.case(answer.status)
    assert answer.status == 408, answer
    assert timeout_s - 0.05 <= took < timeout_s + 1.5, took
    problem = assert_problem(408, answer.headers["Content-Type"], answer.body)
    assert problem["type"] == PROBLEM_TYPE + "request-timeout"
    assert answer.headers["Connection"].lower() == "close"
    app.contract.check("POST", EVENTS_PATH + "/{token}", answer.status, answer.headers, answer.body)
    assert closed, "the connection was kept open after the 408"


def test_a_body_slower_than_usual_but_within_the_timeout_is_fine(
    harness: Harness, fuzz_stats: FuzzStats
) -> None:
    app = harness.apps["slow-clients"]
    body = orjson.dumps({**EVENT, "id": "slow-but-in-time"})
    pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
    answer, _, _ = harness.run(trickle(app, body_head(len(body)), pieces, 0.05, limit_s=3))
    assert answer is not None
    fuzz_stats.case(answer.status)
    assert (answer.status, orjson.loads(answer.body)["outcome"]) == (200, "published")

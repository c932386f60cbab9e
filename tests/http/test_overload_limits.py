"""Overload and body limits: shed at once instead of queueing; refuse big and slow bodies.

docs/http-api.md, "Answers on POST /api/v1/events" and "Overload": beyond
``BRIDGE_MAX_IN_FLIGHT`` requests 503 ``overloaded`` with ``Retry-After: 1``; a body over
``BRIDGE_MAX_BODY_BYTES`` is 413 (from ``Content-Length``, or as a chunked body passes
the limit); a body not received within ``BRIDGE_READ_TIMEOUT_S`` is 408; both close the
connection.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import orjson

from tests.support.events import ALTINN_CONTENT_TYPE, body_bytes, valid_fixture, with_attributes
from tests.support.http import EVENTS_PATH, json_answer, post_event, problem_answer, retry_after_s
from tests.support.logs import LOG_DIR
from tests.support.metrics import event_counts, sample
from tests.support.waiting import until

PUBLISHED_FIXTURE = valid_fixture("06-correspondencepublished")
LIMIT = 1024


def _distinct_events(count: int) -> list[bytes]:
    return [
        with_attributes(PUBLISHED_FIXTURE, id=f"event-{n}", resourceinstance=f"ri-{n}") for n in range(count)
    ]


def _padded(body: bytes, size: int) -> bytes:
    assert len(body) <= size
    return body + b" " * (size - len(body))


async def _chunks(*parts: bytes, pause_s: float = 0.0) -> AsyncIterator[bytes]:
    """A body sent chunked (no Content-Length), optionally pausing between parts."""
    for n, part in enumerate(parts):
        if n and pause_s:
            await asyncio.sleep(pause_s)
        yield part


def _assert_every_success_is_a_record(answers: list[dict[str, object]], fake_publisher) -> None:
    """2xx means in Kafka: each published answer names a record the publisher holds, and vice versa."""
    where = sorted((a["topic"], a["offset"]) for a in answers)
    stored = sorted((r.topic, n) for n, r in enumerate(fake_publisher.records))
    assert where == stored


# --- overload --------------------------------------------------------------------------------


async def test_requests_beyond_max_in_flight_are_shed_at_once(make_client, fake_publisher, registry):
    limit, count = 4, 20
    fake_publisher.gate = asyncio.Event()
    client = await make_client(BRIDGE_MAX_IN_FLIGHT=str(limit))

    posts = asyncio.gather(*(post_event(client, body) for body in _distinct_events(count)))
    # The first `limit` wait on Kafka; every other one must be answered without waiting for them.
    await until(
        lambda: (
            fake_publisher.held == limit
            and sample(registry, "altinn_bridge_events_total", outcome="overloaded", type="other")
            == count - limit
        )
    )
    fake_publisher.gate.set()
    responses = await posts

    assert Counter(r.status for r in responses) == {200: limit, 503: count - limit}
    published = []
    for response in responses:
        if response.status == 200:
            published.append(await json_answer(response))
        else:
            problem = await problem_answer(response, 503, "overloaded")
            assert "BRIDGE_MAX_IN_FLIGHT" in problem["detail"]
            assert retry_after_s(response) == 1
    assert {a["outcome"] for a in published} == {"published"}
    _assert_every_success_is_a_record(published, fake_publisher)
    assert fake_publisher.max_held == limit
    assert event_counts(registry) == {
        ("published", "correspondencepublished"): limit,
        ("overloaded", "other"): count - limit,
    }


async def test_shed_requests_free_their_place(make_client, fake_publisher, registry):
    limit = 2
    fake_publisher.gate = asyncio.Event()
    client = await make_client(BRIDGE_MAX_IN_FLIGHT=str(limit))
    first, second, third = _distinct_events(3)

    held = asyncio.gather(post_event(client, first), post_event(client, second))
    await until(lambda: fake_publisher.held == limit)
    await problem_answer(await post_event(client, third), 503, "overloaded")
    fake_publisher.gate.set()
    assert [r.status for r in await held] == [200, 200]

    answer = await json_answer(await post_event(client, third))

    assert answer["outcome"] == "published"
    assert len(fake_publisher.records) == 3
    assert sample(registry, "altinn_bridge_requests_in_flight") == 0


async def test_healthz_answers_while_overloaded(make_client, fake_publisher):
    limit = 2
    fake_publisher.gate = asyncio.Event()
    client = await make_client(BRIDGE_MAX_IN_FLIGHT=str(limit))
    held = asyncio.gather(*(post_event(client, body) for body in _distinct_events(limit)))
    await until(lambda: fake_publisher.held == limit)

    assert await json_answer(await client.get("/healthz")) == {"status": "ok"}

    fake_publisher.gate.set()
    assert [r.status for r in await held] == [200] * limit


async def test_shed_requests_are_summarised_in_the_log_not_one_line_each(make_client, fake_publisher):
    # Shedding happens when CPU is short; a log line per shed request would cost more of it.
    limit = 1
    fake_publisher.gate = asyncio.Event()
    client = await make_client(BRIDGE_MAX_IN_FLIGHT=str(limit))
    log = LOG_DIR / "in-process.log"
    before = log.stat().st_size
    first, *others = _distinct_events(21)
    held = asyncio.create_task(post_event(client, first))
    await until(lambda: fake_publisher.held == limit)

    shed = [await post_event(client, body) for body in others]
    fake_publisher.gate.set()
    await json_answer(await held)

    assert {r.status for r in shed} == {503}
    with log.open("rb") as handle:
        handle.seek(before)
        lines = [orjson.loads(line) for line in handle.read().splitlines() if line.startswith(b"{")]
    summaries = [line for line in lines if line["event"] == "requests shed: overloaded"]
    assert len(summaries) == 1  # the first shed request logs at once; the rest wait for the interval
    assert summaries[0]["count"] == 1
    assert not [line for line in lines if line.get("outcome") == "overloaded"]
    assert [line["outcome"] for line in lines if line["event"] == "request"] == ["published"]


# --- body size ---------------------------------------------------------------------------------


async def test_content_length_over_the_limit_is_413_naming_limit_and_variable(
    make_client, fake_publisher, registry
):
    client = await make_client(BRIDGE_MAX_BODY_BYTES=str(LIMIT))

    response = await post_event(client, _padded(body_bytes(PUBLISHED_FIXTURE), LIMIT + 1))
    problem = await problem_answer(response, 413, "payload-too-large")

    assert str(LIMIT) in problem["detail"]
    assert "BRIDGE_MAX_BODY_BYTES" in problem["detail"]
    assert response.headers.get("Connection", "").lower() == "close"
    assert fake_publisher.records == []
    assert event_counts(registry) == {("rejected", "other"): 1}


async def test_chunked_body_over_the_limit_is_413(make_client, fake_publisher, registry):
    client = await make_client(BRIDGE_MAX_BODY_BYTES=str(LIMIT))
    body = _padded(body_bytes(PUBLISHED_FIXTURE), LIMIT + 1)

    response = await client.post(
        EVENTS_PATH,
        data=_chunks(body[:LIMIT], body[LIMIT:]),
        headers={"Content-Type": ALTINN_CONTENT_TYPE},
    )
    problem = await problem_answer(response, 413, "payload-too-large")

    assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request_info.headers
    assert str(LIMIT) in problem["detail"]
    assert "BRIDGE_MAX_BODY_BYTES" in problem["detail"]
    assert response.headers.get("Connection", "").lower() == "close"
    assert fake_publisher.records == []
    assert event_counts(registry) == {("rejected", "other"): 1}


async def test_large_chunked_body_is_refused_while_it_is_still_being_sent(make_client, fake_publisher):
    # 4 MiB against a 1 KiB limit: answered 413 as soon as it passes the limit, not after reading it all.
    client = await make_client(BRIDGE_MAX_BODY_BYTES=str(LIMIT))
    chunk = b" " * 65536

    response = await client.post(
        EVENTS_PATH, data=_chunks(*[chunk] * 64), headers={"Content-Type": ALTINN_CONTENT_TYPE}
    )
    problem = await problem_answer(response, 413, "payload-too-large")

    assert "BRIDGE_MAX_BODY_BYTES" in problem["detail"]
    assert response.headers.get("Connection", "").lower() == "close"
    assert fake_publisher.records == []


async def test_chunked_body_within_the_limit_is_published(make_client, fake_publisher):
    client = await make_client(BRIDGE_MAX_BODY_BYTES=str(LIMIT))
    body = _padded(body_bytes(PUBLISHED_FIXTURE), LIMIT)

    response = await client.post(
        EVENTS_PATH,
        data=_chunks(body[:100], body[100:500], body[500:]),
        headers={"Content-Type": ALTINN_CONTENT_TYPE},
    )
    answer = await json_answer(response)

    assert answer["outcome"] == "published"
    assert [r.value for r in fake_publisher.records] == [body]


async def test_body_at_exactly_the_limit_is_published(make_client, fake_publisher):
    client = await make_client(BRIDGE_MAX_BODY_BYTES=str(LIMIT))
    body = _padded(body_bytes(PUBLISHED_FIXTURE), LIMIT)

    answer = await json_answer(await post_event(client, body))

    assert answer["outcome"] == "published"
    assert [r.value for r in fake_publisher.records] == [body]


async def test_binary_mode_body_over_the_limit_is_413(make_client, fake_publisher):
    client = await make_client(BRIDGE_MAX_BODY_BYTES=str(LIMIT))

    response = await client.post(
        EVENTS_PATH,
        data=b"x" * (LIMIT + 1),
        headers={
            "ce-specversion": "1.0",
            "ce-id": "binary-1",
            "ce-source": "urn:test",
            "ce-type": "no.altinn.correspondence.correspondencepublished",
            "ce-resource": "urn:altinn:resource:test",
            "ce-resourceinstance": "ri-1",
            "Content-Type": "application/octet-stream",
        },
    )
    await problem_answer(response, 413, "payload-too-large")

    assert fake_publisher.records == []


async def test_connection_closed_after_413_does_not_stop_the_next_request(make_client, fake_publisher):
    client = await make_client(BRIDGE_MAX_BODY_BYTES=str(LIMIT))
    await problem_answer(
        await post_event(client, _padded(body_bytes(PUBLISHED_FIXTURE), LIMIT + 1)), 413, "payload-too-large"
    )

    answer = await json_answer(await post_event(client, PUBLISHED_FIXTURE))

    assert answer["outcome"] == "published"
    assert len(fake_publisher.records) == 1


# --- slow bodies --------------------------------------------------------------------------------


async def test_body_slower_than_the_read_timeout_is_408(make_client, fake_publisher, registry):
    client = await make_client(BRIDGE_READ_TIMEOUT_S="0.2")
    body = body_bytes(PUBLISHED_FIXTURE)

    response = await client.post(
        EVENTS_PATH,
        data=_chunks(body[:10], body[10:], pause_s=1.0),
        headers={"Content-Type": ALTINN_CONTENT_TYPE},
    )
    problem = await problem_answer(response, 408, "request-timeout")

    assert "BRIDGE_READ_TIMEOUT_S" in problem["detail"]
    assert "0.2" in problem["detail"]
    assert response.headers.get("Connection", "").lower() == "close"
    assert fake_publisher.records == []
    assert event_counts(registry) == {("rejected", "other"): 1}


async def test_body_within_the_read_timeout_is_published(make_client, fake_publisher):
    client = await make_client(BRIDGE_READ_TIMEOUT_S="5")
    body = body_bytes(PUBLISHED_FIXTURE)

    response = await client.post(
        EVENTS_PATH,
        data=_chunks(body[:10], body[10:], pause_s=0.05),
        headers={"Content-Type": ALTINN_CONTENT_TYPE},
    )

    assert (await json_answer(response))["outcome"] == "published"
    assert [r.value for r in fake_publisher.records] == [body]

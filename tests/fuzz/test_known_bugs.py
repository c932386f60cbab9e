"""Bugs in ``bridge/`` the fuzz tests found: each test asserts the right behaviour.

While a bug is open (``tests/fuzz/known_bugs.py``) its tests are strict xfails:
they run, fail as the bug makes them, and turn the suite red (XPASS) the
moment ``bridge/`` is fixed, so that the bug is then marked closed there. A
closed bug's tests are plain regression tests.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from bridge.events import InvalidEvent, parse_event, structured_from_binary
from tests.fuzz import known_bugs
from tests.fuzz.harness import Answer, Harness, read_answer
from tests.fuzz.support import TOKEN
from tests.support.events import VALID
from tests.support.http import EVENTS_PATH, assert_problem

pytestmark = pytest.mark.fuzz

EVENT: dict[str, Any] = orjson.loads((VALID[5]).read_bytes())  # 06-correspondencepublished


def open_bug(
    bug: known_bugs.KnownBug, raises: type[BaseException] | tuple[type[BaseException], ...] = AssertionError
) -> pytest.MarkDecorator:
    """Strict xfail while ``bug`` is open, failing only the way the bug makes it fail (``raises``)."""
    return pytest.mark.xfail(
        condition=bug.open,
        strict=True,
        raises=raises,
        reason=f"open bug {bug.key}, see tests/fuzz/known_bugs.py",
    )


def raw_post(harness: Harness, headers: bytes, body: bytes) -> Answer:
    request = (
        b"POST "
        + EVENTS_PATH.encode()
        + b"/"
        + TOKEN.encode()
        + b" HTTP/1.1\r\nHost: fuzz\r\n"
        + headers
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body
    )
    answer = harness.raw(harness.apps["default"], request)
    assert answer is not None
    return answer


def assert_dead_lettered(answer: Answer, field: str) -> None:
    assert answer.status == 200, (answer.status, answer.body)
    outcome = orjson.loads(answer.body)
    assert (outcome["outcome"], outcome["reason"], outcome["field"]) == (
        "dead_lettered",
        "invalid_attribute",
        field,
    )


# --- non-utf8-ce-header -------------------------------------------------------------------


@open_bug(known_bugs.CE_ID_NOT_UTF8_IN_ANSWER)
def test_binary_mode_ce_header_that_is_not_utf8_is_dead_lettered(harness: Harness) -> None:
    headers = b"ce-specversion: 1.0\r\nce-id: a\xff\r\nce-source: s\r\nce-type: t\r\nce-resource: r\r\n"
    answer = raw_post(harness, headers + b"ce-resourceinstance: ri\r\n", b"")
    assert_dead_lettered(answer, "id")


@open_bug(known_bugs.NON_UTF8_CE_HEADER)
def test_binary_mode_ce_source_that_is_not_utf8_is_dead_lettered(harness: Harness) -> None:
    headers = b"ce-specversion: 1.0\r\nce-id: i-1\r\nce-source: s\xff\r\nce-type: t\r\nce-resource: r\r\n"
    answer = raw_post(harness, headers + b"ce-resourceinstance: ri\r\n", b"")
    assert_dead_lettered(answer, "source")


@open_bug(known_bugs.NON_UTF8_CE_HEADER, raises=UnicodeEncodeError)
def test_structured_from_binary_raises_only_invalid_event_for_undecodable_headers() -> None:
    # What aiohttp hands over for the raw bytes b"a\xff": surrogate-escaped text.
    with pytest.raises(InvalidEvent) as raised:
        structured_from_binary([("ce-specversion", "1.0"), ("ce-id", "a\udcff")], b"")
    assert raised.value.field == "id"


# --- non-utf8-content-type-binary ------------------------------------------------------------


@open_bug(known_bugs.NON_UTF8_CONTENT_TYPE)
def test_binary_mode_content_type_that_is_not_utf8_is_dead_lettered(harness: Harness) -> None:
    headers = b"ce-specversion: 1.0\r\nce-id: i\r\nce-source: s\r\nce-type: t\r\nce-resource: r\r\n"
    answer = raw_post(harness, headers + b"ce-resourceinstance: ri\r\nContent-Type: text/pl\xffain\r\n", b"x")
    assert answer.status == 200, (answer.status, answer.body)
    assert orjson.loads(answer.body)["outcome"] == "dead_lettered"


@open_bug(known_bugs.NON_UTF8_CONTENT_TYPE, raises=orjson.JSONEncodeError)
def test_structured_from_binary_raises_only_invalid_event_for_an_undecodable_content_type() -> None:
    with pytest.raises(InvalidEvent):
        structured_from_binary([("ce-specversion", "1.0"), ("content-type", "text/pl\udcffain")], b"x")


# --- non-ascii-data-base64 ---------------------------------------------------------------------


@open_bug(known_bugs.NON_ASCII_DATA_BASE64, raises=ValueError)
def test_parse_event_raises_invalid_event_for_non_ascii_data_base64() -> None:
    with pytest.raises(InvalidEvent) as raised:
        parse_event(orjson.dumps({**EVENT, "data_base64": "\u00e9"}))
    assert (raised.value.reason, raised.value.field) == ("invalid_attribute", "data_base64")


@open_bug(known_bugs.NON_ASCII_DATA_BASE64)
def test_non_ascii_data_base64_is_dead_lettered(harness: Harness) -> None:
    body = orjson.dumps({**EVENT, "data_base64": "\u00e9"})
    app = harness.apps["default"]
    answer = harness.request(
        app, "POST", f"{EVENTS_PATH}/{TOKEN}", {"Content-Type": "application/json"}, body
    )
    assert_dead_lettered(answer, "data_base64")


@open_bug(known_bugs.NON_ASCII_DATA_BASE64)
def test_non_ascii_data_base64_in_a_batch_is_dead_lettered(harness: Harness) -> None:
    body = orjson.dumps([{**EVENT, "data_base64": "\u00e9"}])
    app = harness.apps["default"]
    headers = {"Content-Type": "application/cloudevents-batch+json", "Authorization": f"Bearer {TOKEN}"}
    answer = harness.request(app, "POST", EVENTS_PATH, headers, body)
    assert answer.status == 200, (answer.status, answer.body)
    assert orjson.loads(answer.body)["outcomes"] == {"dead_lettered": 1}


# --- slow-headers-never-time-out ----------------------------------------------------------------


async def _open_for(address: tuple[str, int], first_bytes: bytes, limit_s: float) -> float | None:
    """Send ``first_bytes`` and nothing more; seconds until the server closes, None if not in ``limit_s``."""
    reader, writer = await asyncio.open_connection(*address)
    started = time.monotonic()
    writer.write(first_bytes)
    try:
        async with asyncio.timeout(limit_s):
            try:
                await read_answer(reader)  # a 408 (or any answer) is fine, if the connection then closes
            except asyncio.IncompleteReadError:
                return time.monotonic() - started
            await reader.read()
            return time.monotonic() - started
    except TimeoutError:
        return None
    finally:
        writer.close()


@open_bug(known_bugs.SLOW_HEADERS)
def test_a_client_that_never_finishes_its_headers_is_disconnected(harness: Harness) -> None:
    app = harness.apps["slow-clients"]
    bound_s = app.settings.http.keepalive_timeout_s + 2

    async def both() -> list[float | None]:
        return await asyncio.gather(
            _open_for(app.address, b"", bound_s),
            _open_for(app.address, b"POST /api/v1/events HTTP/1.1\r\nHost: fuzz\r\n", bound_s),
        )

    nothing, half = harness.run(both())
    assert nothing is not None, f"a connection that sent nothing was still open after {bound_s:g} s"
    assert half is not None, f"a connection that sent half its headers was still open after {bound_s:g} s"


@open_bug(known_bugs.CE_ID_NOT_UTF8_IN_ANSWER)
def test_an_undecodable_ce_id_gets_a_problem_or_a_2xx_and_the_server_goes_on(harness: Harness) -> None:
    """Whatever it is answered, a non-2xx answer is a problem, and the server goes on answering."""
    headers = b"ce-specversion: 1.0\r\nce-id: a\xff\r\n"
    answer = raw_post(harness, headers, b"")
    if answer.status >= 400:
        assert_problem(answer.status, answer.headers["Content-Type"], answer.body)
    assert harness.raw(
        harness.apps["default"], b"GET /healthz HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n"
    )

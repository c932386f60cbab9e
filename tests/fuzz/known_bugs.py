"""Bugs in ``bridge/`` the fuzz tests found, each with the test that shows it.

While a bug is ``open``, its test in ``test_known_bugs.py`` is a strict xfail, and
the generative tests accept a 500 only for a request that matches its
``matches`` predicate (and count it: ``known_bug_hits=`` in the summary line).
Once ``bridge/`` is fixed the strict xfail turns into a failure (XPASS): set
``open=False`` here, and the generative tests stop accepting those 500s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class KnownBug:
    """One bug: what goes wrong, and which requests trigger it."""

    key: str
    open: bool
    summary: str
    matches: Callable[[list[tuple[str, bytes]], bytes], bool]


def _wire_headers(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return [(name.lower(), value) for name, value in headers]


def _binary_mode(headers: list[tuple[str, bytes]]) -> bool:
    names = {name for name, _ in headers}
    content_type = next((v for n, v in headers if n == "content-type"), b"")
    media = content_type.split(b";")[0].strip().lower()
    return "ce-specversion" in names and not media.startswith(b"application/cloudevents")


def _not_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _ce_header_not_utf8(headers: list[tuple[str, bytes]], _: bytes) -> bool:
    headers = _wire_headers(headers)
    return _binary_mode(headers) and any(
        name.startswith("ce-") and len(name) > 3 and _not_utf8(value) for name, value in headers
    )


def _ce_id_not_utf8(headers: list[tuple[str, bytes]], _: bytes) -> bool:
    headers = _wire_headers(headers)
    return _binary_mode(headers) and any(name == "ce-id" and _not_utf8(value) for name, value in headers)


def _content_type_not_utf8(headers: list[tuple[str, bytes]], _: bytes) -> bool:
    headers = _wire_headers(headers)
    return _binary_mode(headers) and any(name == "content-type" and _not_utf8(v) for name, v in headers)


def _non_ascii_base64(value: Any) -> bool:
    return isinstance(value, str) and not value.isascii()


def _data_base64_not_ascii(headers: list[tuple[str, bytes]], body: bytes) -> bool:
    headers = _wire_headers(headers)
    if _binary_mode(headers):
        value = next((v for n, v in headers if n == "ce-data_base64"), None)
        if value is None:
            return False
        decoded = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), value)
        return any(b >= 0x80 for b in decoded)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    items = parsed if isinstance(parsed, list) else [parsed]
    return any(isinstance(item, dict) and _non_ascii_base64(item.get("data_base64")) for item in items)


NON_UTF8_CE_HEADER = KnownBug(
    "non-utf8-ce-header",
    open=False,  # fixed in 368919e: _header_value turns the surrogate escapes back into bytes
    summary=(
        "Binary mode: a ce-* header whose raw bytes are not UTF-8 (e.g. 'ce-id: a\\xff') made "
        "bridge.events._header_value raise UnicodeEncodeError (urllib.parse.unquote_to_bytes encodes "
        "aiohttp's surrogate escapes) instead of InvalidEvent."
    ),
    matches=_ce_header_not_utf8,
)
CE_ID_NOT_UTF8_IN_ANSWER = KnownBug(
    "ce-id-not-utf8-in-answer",
    open=False,
    summary=(
        "Binary mode: a ce-id header whose raw bytes are not UTF-8 (e.g. 'ce-id: a\\xff') is answered "
        "500 text/plain ('Server got itself in trouble', not a problem+json) instead of 200 "
        "dead_lettered. The parser now raises InvalidEvent(field='id'), but Pipeline.ingest_binary "
        "copies the raw header value, surrogate escapes and all, into InvalidEvent.event_id; "
        "orjson cannot encode it, neither in the answer (views._json, caught by the problem "
        "middleware: 500) nor in the access log line (bridge/logs.py _orjson_bytes, raised in "
        "access_middleware outside the problem middleware, so aiohttp answers its own 500)."
    ),
    matches=_ce_id_not_utf8,
)
NON_UTF8_CONTENT_TYPE = KnownBug(
    "non-utf8-content-type-binary",
    open=False,  # fixed in 368919e
    summary=(
        "Binary mode: a Content-Type whose raw bytes are not UTF-8 (e.g. 'Content-Type: text/pl\\xffain' "
        "with ce-specversion) is answered 500 instead of 200 dead_lettered. structured_from_binary puts "
        "the surrogate-escaped value into 'datacontenttype' and orjson.dumps raises TypeError "
        "(JSONEncodeError: str is not valid UTF-8)."
    ),
    matches=_content_type_not_utf8,
)
NON_ASCII_DATA_BASE64 = KnownBug(
    "non-ascii-data-base64",
    open=False,  # fixed in 368919e
    summary=(
        "An otherwise valid event whose data_base64 is a string with a non-ASCII character (e.g. "
        "'\u00e9') makes parse_event raise ValueError instead of InvalidEvent, so the request is "
        "answered 500 instead of 200 dead_lettered (invalid_attribute, field data_base64). "
        "base64.b64decode raises plain ValueError for non-ASCII str; bridge.events catches only "
        "(TypeError, binascii.Error). Same in batches and in binary mode (ce-data_base64)."
    ),
    matches=_data_base64_not_ascii,
)
SLOW_HEADERS = KnownBug(
    "slow-headers-never-time-out",
    open=False,  # fixed in 368919e: BRIDGE_KEEPALIVE_TIMEOUT_S (aiohttp's keepalive_timeout)
    summary=(
        "A client that opens a connection and never finishes its request line or headers (slowloris) "
        "keeps the connection open indefinitely (observed: still open after 200 s): "
        "BRIDGE_READ_TIMEOUT_S bounds only the body, and aiohttp's server has no header timeout. "
        "Expected: the connection is closed within a bound."
    ),
    matches=lambda _h, _b: False,  # not a 500: a connection that stays open
)

ALL = (
    NON_UTF8_CE_HEADER,
    CE_ID_NOT_UTF8_IN_ANSWER,
    NON_UTF8_CONTENT_TYPE,
    NON_ASCII_DATA_BASE64,
    SLOW_HEADERS,
)


def explain_500(headers: Iterable[tuple[str, bytes]], body: bytes) -> KnownBug | None:
    """The open known bug a request that got a 500 matches, if any."""
    wire = _wire_headers(headers)
    return next((bug for bug in ALL if bug.open and bug.matches(wire, body)), None)

"""Properties of the parser (``bridge.events``) over generated input.

- Any bytes: ``parse_event`` returns an event or raises ``InvalidEvent``, nothing else.
- Every valid event (built from docs/http-api.md's rules) round-trips: its bytes are
  kept exactly, every attribute reads back as sent.
- Exactly one wrong attribute, of any wrong JSON type: ``InvalidEvent`` naming it.
- Binary mode: any headers and body give ``InvalidEvent`` or a structured event;
  a valid event sent in binary mode reads back as the structured one.
- The OpenAPI document's event schema agrees with the parser.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.events import Event, InvalidEvent, ValidationHandshake, parse_event, structured_from_binary
from bridge.views import OPENAPI_DOCUMENT
from tests.fuzz import known_bugs, strategies
from tests.fuzz.support import FuzzStats, hypothesis_settings

pytestmark = pytest.mark.fuzz

FAST = hypothesis_settings(1200)

EVENT_SCHEMA = jsonschema_rs.validator_for(
    {"components": orjson.loads(OPENAPI_DOCUMENT)["components"], "$ref": "#/components/schemas/CloudEvent"}
)


def parse(
    body: bytes, stats: FuzzStats, *, count: bool = True
) -> Event | ValidationHandshake | InvalidEvent | None:
    """``parse_event(body)``; its InvalidEvent returned; None for an open known bug (counted).

    ``count``: this parse is a generated case of its own (not the second step of one).
    """
    if count:
        stats.case()
    try:
        return parse_event(body)
    except InvalidEvent as exc:
        return exc
    except Exception:
        bug = known_bugs.explain_500([], body)
        if bug is None:
            raise
        stats.known_bug_hits[bug.key] += 1
        return None


@settings(FAST, max_examples=2000)
@given(body=st.one_of(st.binary(max_size=300), strategies.garbage_bodies()))
@example(body=b"")
@example(body=b"\xef\xbb\xbf{}")  # a UTF-8 byte order mark
@example(body=b"[" * 100_000)
@example(body=b'{"a":' * 100_000)
@example(body=b'{"specversion":"1.0","id":"\xff"}')
@example(body=b'{"specversion":"1.0","id":"\\ud800"}')  # a lone surrogate escape
@example(body=b'{"specversion":1e400}')
@example(body=b'{"specversion":' + str(2**70).encode() + b"}")
def test_any_bytes_give_an_event_or_invalid_event(body: bytes, fuzz_stats: FuzzStats) -> None:
    result = parse(body, fuzz_stats)
    if isinstance(result, InvalidEvent):
        assert result.reason in (
            "invalid_json",
            "not_an_object",
            "missing_attribute",
            "invalid_attribute",
            "unsupported_specversion",
        )
        assert result.detail
    elif result is not None:
        assert isinstance(orjson.loads(body), dict)


@settings(FAST)
@given(event=strategies.valid_events())
def test_every_valid_event_round_trips(event: dict[str, Any], fuzz_stats: FuzzStats) -> None:
    body = orjson.dumps(event)
    parsed = parse(body, fuzz_stats)
    if event["type"].lower() == "platform.events.validatesubscription":
        assert parsed == ValidationHandshake(id=event["id"], source=event["source"])
        return
    assert isinstance(parsed, Event), parsed
    assert parsed.raw == body
    assert parsed.attributes == event
    for name in (
        "id",
        "source",
        "type",
        "specversion",
        "resource",
        "resourceinstance",
        "time",
        "subject",
        "alternativesubject",
    ):
        assert getattr(parsed, name) == event.get(name), name
    assert (parsed.time_parsed is None) == (event.get("time") is None)
    assert parse_event(orjson.dumps(parsed.attributes)).attributes == event


@settings(FAST)
@given(case=strategies.invalid_events())
def test_one_wrong_attribute_is_named(case: tuple[dict[str, Any], str], fuzz_stats: FuzzStats) -> None:
    event, name = case
    result = parse(orjson.dumps(event), fuzz_stats)
    if result is None:
        return  # an open known bug, counted
    assert isinstance(result, InvalidEvent), (event, name)
    assert result.field == name, (result.field, result.detail, event)


@pytest.mark.parametrize("name", [a for a in strategies.ATTRIBUTES if a != "data"])
@settings(FAST, max_examples=60)
@given(data=st.data())
def test_every_wrong_json_type_in_every_attribute(
    name: str, data: st.DataObject, fuzz_stats: FuzzStats
) -> None:
    event = data.draw(strategies.valid_events(validation=False))
    event.pop("data", None)
    event[name] = data.draw(strategies.not_strings)
    result = parse(orjson.dumps(event), fuzz_stats)
    assert isinstance(result, InvalidEvent)
    assert (result.reason, result.field) == ("invalid_attribute", name), result.detail


@settings(FAST)
@given(
    obj=st.one_of(
        strategies.valid_events(), strategies.invalid_events().map(lambda c: c[0]), strategies.json_values
    )
)
def test_the_openapi_event_schema_agrees_with_the_parser(obj: Any, fuzz_stats: FuzzStats) -> None:
    result = parse(orjson.dumps(obj), fuzz_stats)
    if result is None:
        return
    schema_valid = EVENT_SCHEMA.is_valid(obj)
    if isinstance(result, InvalidEvent) and schema_valid:
        # The one rule JSON Schema cannot say: the time must be a real instant (Feb 30, +23:99, …).
        assert result.field == "time", (result.detail, obj)
    else:
        assert schema_valid == (not isinstance(result, InvalidEvent)), (result, obj)


# --- binary mode ------------------------------------------------------------------

#: Header values as aiohttp hands them over: raw bytes decoded as UTF-8 with surrogate escapes.
wire_values = st.one_of(
    st.text(max_size=30),
    st.binary(max_size=30).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(max_size=30).map(strategies.percent_encoded),
    st.text(max_size=30).map(lambda t: '"' + t + '"'),
)
header_names = st.one_of(
    st.sampled_from([f"ce-{a}" for a in strategies.ATTRIBUTES] + ["Content-Type", "content-type", "ce-"]),
    st.text(max_size=12).map(lambda t: "ce-" + t),
    st.text(max_size=12),
)


@settings(FAST, max_examples=1600)
@given(
    headers=st.lists(st.tuples(header_names, wire_values), max_size=8),
    body=st.one_of(st.binary(max_size=100), strategies.garbage_bodies()),
)
def test_binary_mode_gives_a_structured_event_or_invalid_event(
    headers: list[tuple[str, str]], body: bytes, fuzz_stats: FuzzStats
) -> None:
    fuzz_stats.case()
    wire = [(name, value.encode("utf-8", "surrogateescape")) for name, value in headers]
    try:
        structured = structured_from_binary(headers, body)
    except InvalidEvent:
        return
    except Exception:
        bug = known_bugs.explain_500([("ce-specversion", b"1.0"), *wire], body)
        if bug is None:
            raise
        fuzz_stats.known_bug_hits[bug.key] += 1
        return
    assert isinstance(orjson.loads(structured), dict)
    parse(structured, fuzz_stats, count=False)


@settings(FAST, max_examples=800)
@given(event=strategies.valid_events(validation=False), quoted=st.booleans())
def test_a_valid_event_in_binary_mode_reads_back_as_sent(
    event: dict[str, Any], quoted: bool, fuzz_stats: FuzzStats
) -> None:
    strings = {k: v for k, v in event.items() if isinstance(v, str) and k != "data_base64"}
    headers = [
        (f"ce-{k}", f'"{strategies.percent_encoded(v)}"' if quoted else strategies.percent_encoded(v))
        for k, v in strings.items()
    ]
    body = orjson.dumps(event["data"]) if "data" in event else b""
    if body:
        headers.append(("Content-Type", "application/json"))
    parsed = parse(structured_from_binary(headers, body), fuzz_stats)
    assert isinstance(parsed, Event), parsed
    expected = dict(strings)
    if body:
        expected |= {"datacontenttype": "application/json", "data": event["data"]}
    assert parsed.attributes == expected

"""Records in the Kafka binding's binary mode (``BRIDGE_RECORD_MODE=binary``), and ``data`` in events.

docs/consumers.md, "Records": in binary mode the value is the event's ``data`` (empty for
Altinn's events, which carry none), ``datacontenttype`` becomes ``content-type`` and every
other attribute, extensions included, a ``ce_<name>`` header. Expected values follow the
CloudEvents JSON format 1.0.2 (3.1, "Handling of data"; 2.2: a ``null`` attribute is unset)
and the Kafka protocol binding, not the code under test.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.config import RecordMode
from bridge.events import Event, InvalidEvent, parse_event
from bridge.routing import Router, binary_record
from tests.support.events import FIXTURES, VALID, VALIDATION_FIXTURE
from tests.support.settings import make_settings

VALID_EVENTS = [p for p in VALID if p != VALIDATION_FIXTURE]
BASE = orjson.loads((FIXTURES / "valid" / "06-correspondencepublished.json").read_bytes())
EXTENSION_FIXTURE = FIXTURES / "valid" / "25-extra-attribute.json"


def _event(attrs: dict[str, Any]) -> Event:
    event = parse_event(orjson.dumps(attrs))
    assert isinstance(event, Event)
    return event


def _binary(**env: str) -> Router:
    return Router(make_settings(**env).topics, RecordMode.BINARY)


def _structured(**env: str) -> Router:
    return Router(make_settings(**env).topics)


def _headers(headers: list[tuple[str, bytes]]) -> dict[str, bytes]:
    names = [name for name, _ in headers]
    assert len(names) == len(set(names)), f"a header twice: {names}"
    return dict(headers)


# --- Altinn's events --------------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID_EVENTS, ids=[p.stem for p in VALID_EVENTS])
def test_altinn_event_as_binary_record(path: Path):
    raw = path.read_bytes()
    attrs = orjson.loads(raw)
    event = parse_event(raw)
    assert isinstance(event, Event)

    route = _binary().route(event)

    assert route.value == b""  # Altinn's events carry no data; never a null value
    assert route.key == attrs["resourceinstance"].encode()
    assert route.topic == _structured().route(event).topic
    assert _headers(route.headers) == {f"ce_{name}": value.encode() for name, value in attrs.items()}
    assert "content-type" not in _headers(route.headers)


def test_extension_attribute_becomes_a_header():
    attrs = orjson.loads(EXTENSION_FIXTURE.read_bytes())
    assert "traceparent" in attrs

    route = _binary().route(_event(attrs))

    assert _headers(route.headers)["ce_traceparent"] == attrs["traceparent"].encode()


def test_header_values_are_bytes_and_names_are_str():
    route = _binary().route(_event(BASE))
    assert route.headers
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in route.headers)


def test_binary_mode_follows_the_routing_table():
    event = _event(BASE)
    assert _binary(BRIDGE_TOPIC_ROUTES="*=altinn.all").route(event).topic == "altinn.all"


@pytest.mark.parametrize("path", [*VALID_EVENTS[:3], EXTENSION_FIXTURE], ids=lambda p: p.stem)
def test_structured_mode_is_the_default_and_keeps_the_bytes(path: Path):
    raw = path.read_bytes()
    event = parse_event(raw)
    assert isinstance(event, Event)

    route = _structured().route(event)

    assert route.value == raw
    assert _headers(route.headers)["content-type"] == b"application/cloudevents+json; charset=utf-8"
    assert Router(make_settings(BRIDGE_RECORD_MODE="structured").topics).route(event) == route


# --- data -------------------------------------------------------------------------------------


def test_json_data_is_the_value_and_datacontenttype_the_content_type():
    data = {"appinfoA": "abc", "appinfoB": 123, "appinfoC": True, "nested": {"list": [1, 2]}}
    attrs = {**BASE, "datacontenttype": "application/json", "data": data}

    route = _binary().route(_event(attrs))

    assert orjson.loads(route.value) == data
    headers = _headers(route.headers)
    assert headers["content-type"] == b"application/json"
    assert not {"ce_data", "ce_datacontenttype", "ce_data_base64"} & set(headers)
    assert headers == {
        "content-type": b"application/json",
        **{f"ce_{name}": value.encode() for name, value in BASE.items()},
    }


def test_data_base64_is_decoded_into_the_value():
    payload = bytes(range(256))
    attrs = {
        **BASE,
        "datacontenttype": "application/vnd.apache.thrift.binary",
        "data_base64": base64.b64encode(payload).decode(),
    }

    route = _binary().route(_event(attrs))

    assert route.value == payload
    headers = _headers(route.headers)
    assert headers["content-type"] == b"application/vnd.apache.thrift.binary"
    assert "ce_data_base64" not in headers


def test_data_base64_without_content_type():
    route = _binary().route(_event({**BASE, "data_base64": base64.b64encode(b"\x00\x01").decode()}))

    assert route.value == b"\x00\x01"
    assert "content-type" not in _headers(route.headers)


def test_json_string_data_stays_a_json_string():
    # JSON format 3.2: a string with a JSON content type is a JSON string, quotes included.
    attrs = {**BASE, "datacontenttype": "application/json", "data": "I'm just a string"}

    route = _binary().route(_event(attrs))

    assert route.value == b'"I\'m just a string"'


def test_explicit_null_json_data_is_json_null():
    # JSON format 3.1.1: `"data": null` is an explicit null payload, distinct from no data.
    route = _binary().route(_event({**BASE, "datacontenttype": "application/json", "data": None}))

    assert route.value == b"null"


def test_string_data_with_a_non_json_content_type_is_the_string_itself():
    # JSON format 3.1.2 and its XML example re-encoded in binary mode: the body is
    # <much wow="xml"/>, not a JSON string literal of it.
    attrs = {**BASE, "datacontenttype": "application/xml", "data": '<much wow="xml"/>'}

    route = _binary().route(_event(attrs))

    assert route.value == b'<much wow="xml"/>'
    assert _headers(route.headers)["content-type"] == b"application/xml"


# --- attribute types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "header"),
    [
        (True, b"true"),
        (False, b"false"),
        (5, b"5"),
        (-12, b"-12"),
        (0, b"0"),
        (1.5, b"1.5"),
        ("text with spaces", b"text with spaces"),
        ("blåbær", "blåbær".encode()),
        ("", b""),
    ],
    ids=["true", "false", "int", "negative", "zero", "float", "string", "utf8", "empty-string"],
)
def test_extension_values_as_header_bytes(value: object, header: bytes):
    route = _binary().route(_event({**BASE, "comexampleextension": value}))

    assert _headers(route.headers)["ce_comexampleextension"] == header


def test_binary_record_of_a_plain_mapping():
    value, headers = binary_record({"id": "1", "flag": True, "count": 2, "data": [1, "a"]})

    assert orjson.loads(value) == [1, "a"]
    # No datacontenttype: data is JSON (JSON format 3.1), and the record says so.
    assert _headers(headers) == {
        "ce_id": b"1",
        "ce_flag": b"true",
        "ce_count": b"2",
        "content-type": b"application/json",
    }


def test_null_attribute_is_unset_so_has_no_header():
    # JSON format 2.2: "When decoding attributes and a null value is encountered, it MUST be
    # treated as the equivalent of unset or omitted." Consumers must not read the text "null".
    attrs = {**BASE, "alternativesubject": None, "comexampleextension": None}

    route = _binary().route(_event(attrs))

    headers = _headers(route.headers)
    assert "ce_alternativesubject" not in headers
    assert "ce_comexampleextension" not in headers
    assert headers["ce_subject"] == BASE["subject"].encode()


# --- what parse_event accepts as data -------------------------------------------------------------


@pytest.mark.parametrize(
    "data_base64",
    ["not base64!", "aGVsbG8", "aGVs\nbG8=", 42, ["aGVsbG8="], {"b64": "aGVsbG8="}],
    ids=["not-base64", "bad-padding", "newline", "number", "list", "object"],
)
def test_invalid_data_base64_is_rejected_naming_it(data_base64: object):
    with pytest.raises(InvalidEvent) as raised:
        parse_event(orjson.dumps({**BASE, "data_base64": data_base64}))

    assert raised.value.field == "data_base64"
    assert raised.value.reason == "invalid_attribute"
    assert raised.value.event_id == BASE["id"]


@pytest.mark.parametrize("data_base64", ["", "aGVsbG8=", "AAEC/w=="], ids=["empty", "text", "bytes"])
def test_valid_data_base64_is_accepted(data_base64: str):
    event = _event({**BASE, "data_base64": data_base64})
    assert event.attributes["data_base64"] == data_base64


@pytest.mark.parametrize("data", [{"a": 1}, "text", None], ids=["object", "string", "null"])
def test_data_and_data_base64_together_are_rejected(data: object):
    with pytest.raises(InvalidEvent) as raised:
        parse_event(orjson.dumps({**BASE, "data": data, "data_base64": "aGVsbG8="}))

    assert raised.value.field == "data"
    assert raised.value.reason == "invalid_attribute"
    assert "data_base64" in raised.value.detail


@pytest.mark.parametrize(
    "data", [{"a": [1, 2]}, "text", 3, None, [1]], ids=["object", "string", "number", "null", "list"]
)
def test_any_json_data_is_accepted_and_kept(data: object):
    raw = orjson.dumps({**BASE, "data": data})
    event = parse_event(raw)

    assert isinstance(event, Event)
    assert event.raw == raw
    assert event.attributes["data"] == data

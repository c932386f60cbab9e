"""Redrive's pure parts: the event a record carries, the progress display, the command's options.

What a record looks like follows docs/consumers.md ("Records") and the CloudEvents Kafka binding
(structured mode: ``content-type: application/cloudevents+json``, the value is the event; binary
mode: ``ce_`` headers and the value is ``data``); dead letters follow docs/operations.md (the body
as received, ``dlq_*`` headers). The broker side is in tests/integration/test_redrive.py.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import orjson
import pytest

from bridge.cli import main
from bridge.events import Event, InvalidEvent, parse_event
from bridge.redrive import Progress, Totals, original_event
from bridge.routing import binary_record
from tests.support.events import VALID_EVENTS, fixture_ids

STRUCTURED = [("content-type", b"application/cloudevents+json; charset=utf-8")]


def binary_headers(attrs: dict[str, object]) -> list[tuple[str, bytes]]:
    """Headers of a binary-mode record as the binding defines them (not built by the code under test)."""
    headers = [(f"ce_{name}", str(value).encode()) for name, value in attrs.items() if name != "data"]
    if "data" in attrs:
        headers.append(("content-type", b"application/json"))
    return headers


@pytest.mark.parametrize("path", VALID_EVENTS, ids=fixture_ids(VALID_EVENTS))
def test_a_structured_record_carries_the_event_byte_for_byte(path: Path):
    raw = path.read_bytes()
    assert original_event(STRUCTURED, raw) == raw
    # Written with BRIDGE_RECORD_CE_HEADERS=on (or by earlier versions): still the value.
    attrs = orjson.loads(raw)
    assert original_event(STRUCTURED + binary_headers(attrs), raw) == raw


@pytest.mark.parametrize("path", VALID_EVENTS, ids=fixture_ids(VALID_EVENTS))
def test_a_binary_record_is_rebuilt_into_the_same_event(path: Path):
    attrs = orjson.loads(path.read_bytes())
    rebuilt = original_event(binary_headers(attrs), b"")
    assert orjson.loads(rebuilt) == attrs
    event = parse_event(rebuilt)
    assert isinstance(event, Event)
    assert (event.id, event.resourceinstance) == (attrs["id"], attrs["resourceinstance"])


@pytest.mark.parametrize("path", VALID_EVENTS, ids=fixture_ids(VALID_EVENTS))
def test_what_the_bridge_writes_in_binary_mode_comes_back(path: Path):
    attrs = orjson.loads(path.read_bytes())
    value, headers = binary_record(attrs)
    assert orjson.loads(original_event(headers, value)) == attrs
    with_data = {**attrs, "data": {"note": "æøå"}}
    value, headers = binary_record(with_data)
    assert orjson.loads(original_event(headers, value)) == {
        **with_data,
        "datacontenttype": "application/json",
    }


def test_a_binary_record_with_data():
    attrs = orjson.loads(VALID_EVENTS[0].read_bytes())
    json_data = original_event([*binary_headers(attrs), ("content-type", b"application/json")], b'{"a": [1]}')
    assert orjson.loads(json_data)["data"] == {"a": [1]}
    assert orjson.loads(json_data)["datacontenttype"] == "application/json"
    headers = [*binary_headers(attrs), ("content-type", b"application/octet-stream")]
    raw = orjson.loads(original_event(headers, b"\x00\xff"))
    assert base64.b64decode(raw["data_base64"]) == b"\x00\xff"
    assert "data" not in orjson.loads(original_event(binary_headers(attrs), b""))


def test_a_binary_record_that_cannot_be_an_event_is_invalid():
    attrs = orjson.loads(VALID_EVENTS[0].read_bytes())
    with pytest.raises(InvalidEvent) as raised:
        original_event([*binary_headers(attrs), ("ce_subject", b"\xff\xfe")], b"")
    assert (raised.value.reason, raised.value.field) == ("invalid_attribute", "subject")
    with pytest.raises(InvalidEvent) as raised:
        original_event([*binary_headers(attrs), ("content-type", b"application/json")], b"{not json")
    assert raised.value.reason == "invalid_json"


def test_a_dead_letter_carries_the_body_as_received():
    body = b'{"specversion": "1.0", "id": 42}'
    headers = [
        ("content-type", b"application/json; charset=utf-8"),
        ("dlq_reason", b"invalid_attribute"),
        ("dlq_detail", b"attribute 'id' must be a string, got int"),
    ]
    assert original_event(headers, body) == body
    assert original_event(headers, None) == b""
    # A dead letter whose request had ce- headers kept none of them: nothing to rebuild from.
    assert original_event([*headers, ("ce_specversion", b"1.0")], body) == body


def test_a_record_without_headers_is_taken_as_a_structured_event():
    raw = VALID_EVENTS[0].read_bytes()
    assert original_event([], raw) == raw


def totals(**outcomes: int) -> Totals:
    t = Totals()
    t.outcomes.update(outcomes)
    return t


def test_progress_on_a_terminal_is_a_bar_redrawn_in_place():
    err = io.StringIO()
    progress = Progress(err, "altinn.correspondence.unknown", terminal=True)
    progress.update(totals(published=5, invalid=1), 12, final=True)
    shown = err.getvalue()
    assert shown.startswith("\raltinn.correspondence.unknown [###############---------------] 6/12")
    assert "published 5" in shown
    assert "invalid 1" in shown
    assert shown.endswith("\n")


def test_progress_elsewhere_is_plain_lines_now_and_then():
    err = io.StringIO()
    progress = Progress(err, "t", terminal=False)
    progress.update(totals(published=1), 10)  # right after the start: nothing yet
    assert err.getvalue() == ""
    progress.update(totals(published=3, duplicate=1), 10, final=True)
    lines = err.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("redrive t: 4/10 records  published 3  duplicates 1  filtered 0  in place 0")
    assert "\r" not in err.getvalue()


def test_summary_counts_every_outcome():
    t = totals(published=2, duplicate=1, filtered=1, in_place=3, invalid=2, validation=1)
    t.invalid_reasons.update({"missing_attribute": 2})
    t.published_to.update({"x": 2})
    summary = t.as_json()
    assert {k: summary[k] for k in ("published", "duplicates", "filtered", "in_place", "invalid")} == {
        "published": 2,
        "duplicates": 1,
        "filtered": 1,
        "in_place": 3,
        "invalid": 2,
    }
    assert summary["invalid_reasons"] == {"missing_attribute": 2}
    assert summary["published_to"] == {"x": 2}


# --- the command's options, refused before anything connects ----------------------------------

ENV = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "is neither an RFC 3339 date-time"),
        (["--until", "2026-13-01T00:00:00Z"], "is neither an RFC 3339 date-time"),
        (["--limit", "0"], "a whole number of at least 1"),
        ([], "the following arguments are required: --from"),
    ],
)
def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str):
    source = [] if not args else ["--from", "t"]
    with pytest.raises(SystemExit) as raised:
        main(["redrive", *source, *args], env=ENV)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_since_after_until_exits_2(capsys: pytest.CaptureFixture[str]):
    code = main(["redrive", "--from", "t", "--since", "1h", "--until", "2h"], env=ENV)
    assert code == 2
    assert "--since must be before --until" in capsys.readouterr().err


def test_since_takes_rfc3339_or_a_duration_ago(capsys: pytest.CaptureFixture[str]):
    # Both forms parse; the order check then tells them apart: 2020 is before 1 hour ago.
    assert main(["redrive", "--from", "t", "--since", "1h", "--until", "2020-01-01T00:00:00Z"], env=ENV) == 2
    assert "--since must be before --until" in capsys.readouterr().err

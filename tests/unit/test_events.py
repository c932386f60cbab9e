"""Parsing the CloudEvents Altinn pushes: every fixture, the time format, the edge cases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from bridge.events import KNOWN_TYPES, Event, InvalidEvent, ValidationHandshake, parse_event, parse_time
from tests.support.events import FIXTURES, INVALID, VALID, VALIDATION_FIXTURE

VALID_EVENTS = [p for p in VALID if p != VALIDATION_FIXTURE]
UNKNOWN_TYPE_FIXTURE = FIXTURES / "valid" / "24-future-unknown-type.json"
EXTRA_ATTRIBUTE_FIXTURE = FIXTURES / "valid" / "25-extra-attribute.json"
LEGACY_SUBJECT_FIXTURE = FIXTURES / "valid" / "20-legacy-party-subject.json"
NO_ALTERNATIVESUBJECT_FIXTURE = FIXTURES / "valid" / "21-person-recipient-no-alternativesubject.json"
BASE = orjson.loads((FIXTURES / "valid" / "06-correspondencepublished.json").read_bytes())


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _parse_dict(attrs: dict[str, object]) -> Event | ValidationHandshake:
    return parse_event(orjson.dumps(attrs))


def _event(attrs: dict[str, object]) -> Event:
    parsed = _parse_dict(attrs)
    assert isinstance(parsed, Event)
    return parsed


# --- valid fixtures ----------------------------------------------------------


def test_fixture_lists_are_complete():
    # The parametrised tests below are only as good as these lists.
    assert len(VALID) >= 25
    assert VALIDATION_FIXTURE in VALID
    assert UNKNOWN_TYPE_FIXTURE in VALID
    assert EXTRA_ATTRIBUTE_FIXTURE in VALID


@pytest.mark.parametrize("path", VALID_EVENTS, ids=_ids(VALID_EVENTS))
def test_valid_fixture_parses_with_raw_bytes_kept(path: Path):
    body = path.read_bytes()
    attrs = orjson.loads(body)

    event = parse_event(body)

    assert isinstance(event, Event)
    assert event.raw == body
    assert event.id == attrs["id"]
    assert event.source == attrs["source"]
    assert event.type == attrs["type"]
    assert event.specversion == "1.0"
    assert event.resource == attrs["resource"]
    assert event.resourceinstance == attrs["resourceinstance"]
    assert event.time == attrs["time"]
    assert event.time_parsed is not None
    assert event.time_parsed.tzinfo is not None
    assert event.subject == attrs.get("subject")
    assert event.alternativesubject == attrs.get("alternativesubject")


@pytest.mark.parametrize("path", VALID_EVENTS, ids=_ids(VALID_EVENTS))
def test_valid_fixture_short_type_and_known(path: Path):
    event = parse_event(path.read_bytes())
    assert isinstance(event, Event)
    name = orjson.loads(path.read_bytes())["type"].removeprefix("no.altinn.correspondence.")

    assert event.short_type == name
    assert event.is_known_type is (path != UNKNOWN_TYPE_FIXTURE)


def test_fixtures_01_to_18_cover_every_known_type_once():
    short_types = []
    for path in VALID[:18]:
        event = parse_event(path.read_bytes())
        assert isinstance(event, Event)
        short_types.append(event.short_type)
    assert sorted(short_types) == sorted(KNOWN_TYPES)


def test_unknown_future_type_still_parses():
    event = parse_event(UNKNOWN_TYPE_FIXTURE.read_bytes())
    assert isinstance(event, Event)
    assert event.short_type == "correspondencereceiverreplied"
    assert event.is_known_type is False


def test_validation_event_is_a_handshake():
    body = VALIDATION_FIXTURE.read_bytes()
    assert parse_event(body) == ValidationHandshake(
        id="694caa35-8b25-4cd7-b800-f6eeb93c56ed",
        source="https://platform.tt02.altinn.no/events/api/v1/subscriptions/1234",
    )


def test_validation_type_matched_case_insensitively():
    attrs = orjson.loads(VALIDATION_FIXTURE.read_bytes())
    attrs["type"] = "Platform.Events.ValidateSubscription"
    assert isinstance(_parse_dict(attrs), ValidationHandshake)


@pytest.mark.parametrize(
    "event_type",
    [
        "No.Altinn.Correspondence.CorrespondencePublished",
        "NO.ALTINN.CORRESPONDENCE.CORRESPONDENCEPUBLISHED",
        "no.altinn.correspondence.Correspondencepublished",
    ],
    ids=["title-case", "upper-case", "capital-name"],
)
def test_type_matching_is_case_insensitive(event_type: str):
    event = _event({**BASE, "type": event_type})
    assert event.short_type == "correspondencepublished"
    assert event.is_known_type is True
    assert event.type == event_type  # kept as received


@pytest.mark.parametrize(
    "event_type",
    ["no.altinn.correspondence.Published", "platform.events.something", "correspondencepublished"],
    ids=["old-doc-type", "other-prefix", "short-name-only"],
)
def test_types_outside_the_known_list_are_unknown_but_parse(event_type: str):
    event = _event({**BASE, "type": event_type})
    assert event.is_known_type is False


def test_extension_attribute_is_kept_in_raw_bytes():
    body = EXTRA_ATTRIBUTE_FIXTURE.read_bytes()
    event = parse_event(body)
    assert isinstance(event, Event)
    assert event.raw == body
    assert b'"traceparent"' in event.raw
    assert orjson.loads(event.raw)["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert event.time_parsed == datetime(2026, 11, 20, 8, 4, tzinfo=UTC)


def test_legacy_party_subject_is_accepted():
    event = parse_event(LEGACY_SUBJECT_FIXTURE.read_bytes())
    assert isinstance(event, Event)
    assert event.subject == "/party/50015641"


def test_missing_alternativesubject_is_none():
    event = parse_event(NO_ALTERNATIVESUBJECT_FIXTURE.read_bytes())
    assert isinstance(event, Event)
    assert event.alternativesubject is None


def test_event_without_time_is_accepted():
    attrs = {k: v for k, v in BASE.items() if k != "time"}
    event = _event(attrs)
    assert event.time is None
    assert event.time_parsed is None


def test_event_with_null_time_is_accepted():
    event = _event({**BASE, "time": None})
    assert event.time is None
    assert event.time_parsed is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("subject", 42), ("subject", {"urn": "x"}), ("alternativesubject", ["/organisation/1"])],
    ids=["subject-number", "subject-object", "alternativesubject-list"],
)
def test_optional_attribute_of_wrong_type_is_invalid(field: str, value: object):
    with pytest.raises(InvalidEvent, match=f"'{field}' must be a string") as info:
        _parse_dict({**BASE, field: value})
    assert info.value.reason == "invalid_attribute"
    assert info.value.field == field


# --- invalid fixtures --------------------------------------------------------

#: file name → (reason, field)
INVALID_EXPECTED: dict[str, tuple[str, str | None]] = {
    "bad-time.json": ("invalid_attribute", "time"),
    "empty-id.json": ("invalid_attribute", "id"),
    "json-array-on-single-endpoint.json": ("not_an_object", None),
    "missing-id.json": ("missing_attribute", "id"),
    "missing-resourceinstance.json": ("missing_attribute", "resourceinstance"),
    "not-an-object.json": ("not_an_object", None),
    "not-json.txt": ("invalid_json", None),
    "person-subject-national-id-as-time.json": ("invalid_attribute", "time"),
    "type-not-a-string.json": ("invalid_attribute", "type"),
    "wrong-specversion.json": ("unsupported_specversion", "specversion"),
}


def test_invalid_table_covers_every_invalid_fixture():
    assert sorted(INVALID_EXPECTED) == sorted(p.name for p in INVALID)


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_fixture_raises_with_reason_and_field(path: Path):
    reason, field = INVALID_EXPECTED[path.name]
    with pytest.raises(InvalidEvent) as info:
        parse_event(path.read_bytes())
    assert info.value.reason == reason
    assert info.value.field == field
    assert info.value.detail
    assert str(info.value) == info.value.detail
    if field is not None:
        assert f"'{field}'" in info.value.detail


def test_invalid_event_is_a_value_error():
    assert issubclass(InvalidEvent, ValueError)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b"null", "not_an_object"),
        (b"42", "not_an_object"),
        (b"[]", "not_an_object"),
    ],
    ids=["empty-body", "not-utf8", "null", "number", "empty-array"],
)
def test_bodies_that_are_not_one_object(body: bytes, reason: str):
    with pytest.raises(InvalidEvent) as info:
        parse_event(body)
    assert info.value.reason == reason
    assert info.value.field is None


@pytest.mark.parametrize(
    "field", ["specversion", "id", "source", "type", "resource", "resourceinstance"], ids=str
)
def test_each_required_attribute_missing(field: str):
    attrs = {k: v for k, v in BASE.items() if k != field}
    with pytest.raises(InvalidEvent, match=f"'{field}' is missing") as info:
        _parse_dict(attrs)
    assert info.value.reason == "missing_attribute"
    assert info.value.field == field


def test_validation_event_needs_no_correspondence_attributes():
    # No time, resource, resourceinstance or subject: still a valid handshake.
    attrs = orjson.loads(VALIDATION_FIXTURE.read_bytes())
    assert set(attrs) == {"specversion", "id", "source", "type"}
    assert isinstance(_parse_dict(attrs), ValidationHandshake)


def test_bad_time_detail_is_bounded():
    with pytest.raises(InvalidEvent) as info:
        _parse_dict({**BASE, "time": "x" * 10_000})
    assert info.value.field == "time"
    assert len(info.value.detail) < 200


# --- parse_time --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-08-20T08:57:56.1234567Z", datetime(2026, 8, 20, 8, 57, 56, 123456, tzinfo=UTC)),
        ("2026-08-20T08:57:56.5Z", datetime(2026, 8, 20, 8, 57, 56, 500000, tzinfo=UTC)),
        ("2026-08-20T08:57:56Z", datetime(2026, 8, 20, 8, 57, 56, tzinfo=UTC)),
        ("2026-08-20T08:57:56.123456Z", datetime(2026, 8, 20, 8, 57, 56, 123456, tzinfo=UTC)),
        ("2026-11-20T09:04:00+01:00", datetime(2026, 11, 20, 8, 4, tzinfo=UTC)),
        ("2026-11-20T09:04:00-02:30", datetime(2026, 11, 20, 11, 34, tzinfo=UTC)),
        ("2026-08-20t08:57:56z", datetime(2026, 8, 20, 8, 57, 56, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
    ids=[
        "seven-fraction-digits",
        "one-fraction-digit",
        "no-fraction",
        "six-fraction-digits",
        "plus-one-hour-offset",
        "negative-offset",
        "lower-case-t-and-z",
        "leap-second",
    ],
)
def test_parse_time_gives_the_right_instant(value: str, expected: datetime):
    parsed = parse_time(value)
    assert parsed == expected
    assert parsed.utcoffset() is not None


def test_parse_time_keeps_the_received_offset():
    parsed = parse_time("2026-11-20T09:04:00+01:00")
    assert parsed.hour == 9
    assert parsed.astimezone(UTC).hour == 8


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-20",
        "2026-11-20T09:00Z",
        "20261120T090000Z",
        "2026-13-01T00:00:00Z",
        "yesterday",
        "2026-11-20T09:00:00",
        "2026-02-30T00:00:00Z",
        "2026-11-20T24:00:00Z",
        "2026-11-20T09:00:00.Z",
        "2026-11-20 09:00:00Z",
        "2026-11-20T09:00:00Z\n",
        "",
    ],
    ids=[
        "date-only",
        "no-seconds",
        "basic-format",
        "month-13",
        "yesterday",
        "no-offset",
        "february-30",
        "hour-24",
        "empty-fraction",
        "space-separator",
        "trailing-newline",
        "empty",
    ],
)
def test_parse_time_rejects(value: str):
    with pytest.raises(ValueError):
        parse_time(value)


@pytest.mark.parametrize("second", ["61", "99"], ids=lambda s: f"second-{s}")
def test_parse_time_rejects_seconds_beyond_a_leap_second(second: str):
    # RFC 3339 allows 00-60 only (60 for a leap second); 61..99 is not a real instant.
    with pytest.raises(ValueError):
        parse_time(f"2026-11-20T09:00:{second}Z")


def test_event_with_second_99_is_invalid():
    with pytest.raises(InvalidEvent) as info:
        _parse_dict({**BASE, "time": "2026-11-20T09:00:99Z"})
    assert info.value.field == "time"

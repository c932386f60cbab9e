"""JSON log lines with national identity numbers masked, and the suite's own leak scan."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import structlog

from bridge.config import LogLevel
from bridge.logs import MASK, RepeatFilter, configure_logging, get_logger, mask_national_ids, mask_processor
from tests.support.events import FIXTURES
from tests.support.logs import leaked_lines, national_ids_in_fixtures

#: The national identity number in fixture 22.
NATIONAL_ID = "02056712345"
SUBJECT = f"urn:altinn:person:identifier-no:{NATIONAL_ID}"
ALTERNATIVESUBJECT = f"/person/{NATIONAL_ID}"


def test_fixture_22_holds_the_national_id_used_here():
    attrs = orjson.loads((FIXTURES / "valid" / "22-person-recipient-national-id.json").read_bytes())
    assert attrs["subject"] == SUBJECT
    assert attrs["alternativesubject"] == ALTERNATIVESUBJECT
    assert NATIONAL_ID in national_ids_in_fixtures()


# --- mask_national_ids -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NATIONAL_ID, MASK),
        (SUBJECT, "urn:altinn:person:identifier-no:***********"),
        (ALTERNATIVESUBJECT, "/person/***********"),
        (
            f"from {ALTERNATIVESUBJECT} to {SUBJECT}.",
            "from /person/*********** to urn:altinn:person:identifier-no:***********.",
        ),
        (f'{{"subject":"{SUBJECT}"}}', '{"subject":"urn:altinn:person:identifier-no:***********"}'),
        (f"fnr={NATIONAL_ID};", "fnr=***********;"),
    ],
    ids=["bare", "urn", "person-path", "two-in-one-line", "inside-json", "after-equals-sign"],
)
def test_masks_eleven_digit_runs(text: str, expected: str):
    assert mask_national_ids(text) == expected
    assert NATIONAL_ID not in mask_national_ids(text)


@pytest.mark.parametrize(
    "text",
    [
        "0205671234",
        "020567123456",
        "12345678901234567890",
        "urn:altinn:organization:identifier-no:991825827",
        "/party/50015641",
        "5affb229-7631-4992-b0ce-583505c6af07",
        "2026-11-20T09:01:00.1234567Z",
        "1.2345678901",
        "",
    ],
    ids=[
        "ten-digits",
        "twelve-digits",
        "twenty-digits",
        "organisation-number",
        "party-id",
        "uuid",
        "timestamp",
        "decimal",
        "empty",
    ],
)
def test_leaves_other_numbers_alone(text: str):
    assert mask_national_ids(text) == text


@pytest.mark.parametrize(
    "uuid",
    ["5affb229-7631-4992-b0ce-a12345678901", "d23f0824-128b-4f33-8c5c-12345678901f"],
    ids=["letter-then-eleven-digits", "eleven-digits-then-letter"],
)
def test_leaves_digits_inside_a_uuid_alone(uuid: str):
    # Correspondence ids (resourceinstance) are UUIDs; about 1 in 230 random ones has
    # an 11-digit run in its last group. Masking it makes the id unsearchable in logs.
    assert mask_national_ids(uuid) == uuid
    assert mask_national_ids(f"resourceinstance={uuid}") == f"resourceinstance={uuid}"


# --- mask_processor ----------------------------------------------------------


def test_mask_processor_masks_nested_values():
    event_dict = {
        "event": f"publish {SUBJECT}",
        "subject": SUBJECT,
        "nested": {"alternativesubject": ALTERNATIVESUBJECT, "deeper": {"list": ["ok", NATIONAL_ID]}},
        "items": [ALTERNATIVESUBJECT, {"subject": SUBJECT}, 7],
        "pair": ("ok", NATIONAL_ID),
        "count": 3,
        "flag": None,
    }

    masked = mask_processor(None, "info", event_dict)

    assert masked == {
        "event": "publish urn:altinn:person:identifier-no:***********",
        "subject": "urn:altinn:person:identifier-no:***********",
        "nested": {"alternativesubject": "/person/***********", "deeper": {"list": ["ok", MASK]}},
        "items": ["/person/***********", {"subject": "urn:altinn:person:identifier-no:***********"}, 7],
        "pair": ["ok", MASK],
        "count": 3,
        "flag": None,
    }
    assert NATIONAL_ID not in orjson.dumps(masked).decode()


def test_mask_processor_keeps_clean_values():
    event_dict = {"event": "request", "status": 200, "route": "/api/v1/events", "took_s": 0.01}
    assert mask_processor(None, "info", dict(event_dict)) == event_dict


# --- configure_logging -------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back the suite's logging set-up (tests/support/logs.py) after the test."""
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield
    structlog.configure(**saved_structlog)
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def _configure(level: LogLevel = LogLevel.DEBUG) -> io.BytesIO:
    stream = io.BytesIO()
    configure_logging(level, stream=stream)
    return stream


def _lines(stream: io.BytesIO) -> list[dict[str, object]]:
    raw = stream.getvalue()
    assert raw.endswith(b"\n")
    lines = raw.splitlines()
    parsed = [orjson.loads(line) for line in lines]
    assert all(isinstance(obj, dict) for obj in parsed)
    return parsed


@pytest.mark.usefixtures("restore_logging")
def test_structlog_line_is_json_with_national_id_masked():
    stream = _configure()

    get_logger("views").info(
        "event received", subject=SUBJECT, alternativesubject=ALTERNATIVESUBJECT, ids=[NATIONAL_ID]
    )

    assert NATIONAL_ID.encode() not in stream.getvalue()
    [line] = _lines(stream)
    assert line["event"] == "event received"
    assert line["component"] == "views"
    assert line["level"] == "info"
    assert line["subject"] == "urn:altinn:person:identifier-no:***********"
    assert line["alternativesubject"] == "/person/***********"
    assert line["ids"] == [MASK]
    assert isinstance(line["timestamp"], str)
    assert line["timestamp"].endswith("Z")


@pytest.mark.usefixtures("restore_logging")
def test_stdlib_line_is_json_with_national_id_masked():
    stream = _configure()

    logging.getLogger("aiokafka.unit-test").warning("no route for %s", ALTERNATIVESUBJECT)

    assert NATIONAL_ID.encode() not in stream.getvalue()
    [line] = _lines(stream)
    assert line["event"] == "no route for /person/***********"
    assert line["logger"] == "aiokafka.unit-test"
    assert line["level"] == "warning"
    assert isinstance(line["timestamp"], str)


@pytest.mark.usefixtures("restore_logging")
def test_exceptions_are_masked_too():
    stream = _configure()

    def handle_subject() -> None:
        raise ValueError(f"bad subject {SUBJECT}")

    try:
        handle_subject()
    except ValueError:
        get_logger("middleware").exception("unhandled error")
        logging.getLogger("aiohttp.server").exception("Error handling request")

    assert NATIONAL_ID.encode() not in stream.getvalue()
    structlog_line, stdlib_line = _lines(stream)
    for line in (structlog_line, stdlib_line):
        assert "ValueError: bad subject urn:altinn:person:identifier-no:***********" in str(line["exception"])
        assert line["level"] == "error"


@pytest.mark.usefixtures("restore_logging")
def test_both_kinds_of_line_go_to_the_same_stream_in_order():
    stream = _configure()

    get_logger("app").info("first")
    logging.getLogger("aiokafka.conn").info("second")
    get_logger("app").info("third")

    assert [line["event"] for line in _lines(stream)] == ["first", "second", "third"]


@pytest.mark.usefixtures("restore_logging")
def test_aiohttp_access_lines_are_dropped_and_path_tokens_masked_everywhere():
    stream = _configure()
    token = "tok-" + "x" * 30

    logging.getLogger("aiohttp.access").info("POST /api/v1/events/%s 200", token)
    logging.getLogger("aiohttp.server").error("Error handling request to /api/v1/events/%s?a=1", token)
    get_logger("app").info(
        "posted", url=f"https://h/api/v1/events/{token}", nested={"u": f"/api/v1/events/{token}"}
    )

    lines = _lines(stream)
    assert [line["event"] for line in lines] == [
        "Error handling request to /api/v1/events/<token>?a=1",
        "posted",
    ]
    assert lines[1]["url"] == "https://h/api/v1/events/<token>"
    assert lines[1]["nested"] == {"u": "/api/v1/events/<token>"}
    assert token not in stream.getvalue().decode()


@pytest.mark.usefixtures("restore_logging")
def test_level_filters_both_kinds():
    stream = _configure(LogLevel.WARNING)

    get_logger("app").info("structlog info")
    logging.getLogger("aiokafka").info("stdlib info")
    get_logger("app").warning("structlog warning")
    logging.getLogger("aiokafka").error("stdlib error")

    assert [line["event"] for line in _lines(stream)] == ["structlog warning", "stdlib error"]


def test_repeat_filter_lets_one_record_per_interval_through():
    repeat = RepeatFilter(interval_s=10.0)

    def record(created: float, msg: str = "Unable connect to %s") -> logging.LogRecord:
        rec = logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, ("kafka:9092",), None)
        rec.created = created
        return rec

    first, repeat_1, repeat_2, other, later = (
        record(100.0),
        record(101.0),
        record(109.9),
        record(105.0, "another template"),
        record(110.5),
    )
    assert repeat.filter(first) is True
    assert repeat.filter(repeat_1) is False
    assert repeat.filter(repeat_2) is False
    assert repeat.filter(other) is True
    assert repeat.filter(later) is True
    assert later.suppressed == 2
    assert not hasattr(first, "suppressed")


# --- the suite's leak scan ---------------------------------------------------


def test_leaked_lines_finds_a_planted_line(tmp_path: Path):
    (tmp_path / "in-process.log").write_text(
        '{"event":"clean"}\n{"event":"leak","subject":"/person/' + NATIONAL_ID + '"}\n{"event":"clean"}\n'
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bridge-1.log").write_text(f"{MASK}\nplain {NATIONAL_ID} text\n")
    (tmp_path / "notes.txt").write_text(f"{NATIONAL_ID}\n")  # not a *.log: not scanned

    hits = leaked_lines(tmp_path, {NATIONAL_ID})

    assert hits == [
        f'in-process.log:2: {{"event":"leak","subject":"/person/{NATIONAL_ID}"}}',
        f"bridge-1.log:2: plain {NATIONAL_ID} text",
    ]


def test_leaked_lines_is_empty_for_masked_logs(tmp_path: Path):
    (tmp_path / "in-process.log").write_text(f'{{"subject":"/person/{MASK}"}}\n')
    assert leaked_lines(tmp_path, national_ids_in_fixtures()) == []


@pytest.mark.usefixtures("restore_logging")
def test_a_value_that_is_not_utf8_never_breaks_a_log_line():
    stream = _configure()
    raw = b"id-\xff-end".decode("utf-8", "surrogateescape")  # how aiohttp hands over such header bytes

    get_logger("app").info("request", event_id=raw, nested={"k": [raw]})
    logging.getLogger("aiohttp.server").warning("bad header %s", raw)

    lines = _lines(stream)
    assert lines[0]["event_id"] == "id-\ufffd-end"
    assert lines[0]["nested"] == {"k": ["id-\ufffd-end"]}
    assert lines[1]["event"] == "bad header id-\ufffd-end"

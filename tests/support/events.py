"""The Altinn event files in tests/fixtures, and what the docs say about them.

Expected values are derived from these files and the documented contract (docs/consumers.md: type
names, metric labels, default topics, the record contract), never from the code under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.support.fakes import Record

FIXTURES = Path(__file__).parents[1] / "fixtures" / "altinn-events"
VALID = sorted((FIXTURES / "valid").glob("*.json"))
INVALID = sorted(p for p in (FIXTURES / "invalid").iterdir() if p.suffix in (".json", ".txt"))
VALIDATION_FIXTURE = FIXTURES / "valid" / "19-validation-event.json"
#: Every fixture that is a correspondence event (all valid ones but the handshake).
VALID_EVENTS = [p for p in VALID if p != VALIDATION_FIXTURE]
UNKNOWN_TYPE_FIXTURE = FIXTURES / "valid" / "24-future-unknown-type.json"
#: What Altinn sends events with.
ALTINN_CONTENT_TYPE = "application/json; charset=utf-8"

CORRESPONDENCE_PREFIX = "no.altinn.correspondence."
DEFAULT_PREFIX = "altinn.correspondence"
UNKNOWN_TOPIC = "altinn.correspondence.unknown"
DEADLETTER_TOPIC = "altinn.correspondence.deadletter"
#: The 18 known type names, one per fixture 01-18 (fixtures/altinn-events/README.md).
KNOWN_TYPE_NAMES = frozenset(p.stem.split("-", 1)[1] for p in VALID if int(p.stem[:2]) <= 18)
#: Every value the events metric's ``type`` label may take (docs/operations.md, "Metrics").
TYPE_LABELS = KNOWN_TYPE_NAMES | {"validatesubscription", "other"}
#: The record ``content-type`` header of a published event (docs/consumers.md, "Records").
RECORD_CONTENT_TYPE = b"application/cloudevents+json; charset=utf-8"


def valid_fixture(stem: str) -> Path:
    """The valid fixture file ``<stem>.json``, e.g. ``06-correspondencepublished``."""
    path = FIXTURES / "valid" / f"{stem}.json"
    assert path.is_file(), path
    return path


def fixture_ids(paths: list[Path]) -> list[str]:
    """Test ids for parametrising over fixture files: their stems."""
    return [p.stem for p in paths]


def body_bytes(body: bytes | Path) -> bytes:
    """``body`` itself, or the bytes of the fixture file it names, exactly as on disk."""
    return body.read_bytes() if isinstance(body, Path) else body


def attributes(body: bytes | Path) -> dict[str, Any]:
    """The JSON object in ``body`` (bytes or a fixture file)."""
    parsed = orjson.loads(body_bytes(body))
    assert isinstance(parsed, dict)
    return parsed


def with_attributes(path: Path, **changes: object) -> bytes:
    """The fixture at ``path`` re-encoded with ``changes``; a ``None`` value drops the attribute."""
    attrs = attributes(path)
    for name, value in changes.items():
        if value is None:
            attrs.pop(name, None)
        else:
            attrs[name] = value
    return orjson.dumps(attrs)


def type_name(event_type: str) -> str:
    """The lower-case name after ``no.altinn.correspondence.``."""
    return event_type.lower().removeprefix(CORRESPONDENCE_PREFIX)


def type_label(event_type: str) -> str:
    """The documented metric label of ``event_type``: its known name, else ``other``."""
    name = type_name(event_type)
    return name if name in KNOWN_TYPE_NAMES else "other"


def default_topic(event_type: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Documented default topic: ``<prefix>.<name>`` for known types, ``<prefix>.unknown`` otherwise."""
    name = type_name(event_type)
    return f"{prefix}.{name}" if name in KNOWN_TYPE_NAMES else f"{prefix}.unknown"


def assert_event_record(record: Record, body: bytes, topic: str) -> None:
    """``record`` is ``body`` published per the record contract: topic, key, value, headers."""
    attrs = attributes(body)
    assert record.topic == topic
    assert record.key == attrs["resourceinstance"].encode("utf-8")
    assert record.value == body
    # Only content-type by default: any ce_ header would make the Python SDK's auto-detecting
    # reader take the record for binary mode (docs/consumers.md, BRIDGE_RECORD_CE_HEADERS).
    expected = {"content-type": RECORD_CONTENT_TYPE}
    names = [name for name, _ in record.headers]
    assert len(names) == len(set(names)), names
    assert dict(record.headers) == expected

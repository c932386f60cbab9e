"""What landed in Kafka, read back with confluent-kafka (an independent client).

Reads go through devtools/show_topic.py: from the beginning, until nothing new arrives
(Tansu's ListOffsets can be wrong, so never up to a watermark). Events are matched by
their id (the ``ce_id`` header of a binary-mode record, the value's ``id`` of a structured
one), so the session broker's other records do not matter.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from devtools.show_topic import read_topics
from tests.support.broker import DEFAULT_TOPICS


def record_event_id(record: dict[str, Any]) -> str:
    """The event id a record (from ``read_topics``) carries, or ``""``.

    The ``ce_id`` header (binary mode, or ``BRIDGE_RECORD_CE_HEADERS=on``), else the ``id``
    of the structured-mode value.
    """
    header = record["headers"].get("ce_id")
    if header is not None:
        return bytes(header).decode(errors="replace")
    if not record["value"]:
        return ""
    try:
        event = orjson.loads(record["value"])
    except orjson.JSONDecodeError:
        return ""
    event_id = event.get("id") if isinstance(event, dict) else None
    return event_id if isinstance(event_id, str) else ""


def records_with_ce_id(
    bootstrap: str, topics: list[str], event_id: str, *, extra: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The records in ``topics`` of event ``event_id``; ``extra``: librdkafka settings."""
    return [r for r in read_topics(bootstrap, topics, extra=extra) if record_event_id(r) == event_id]


def ce_id_counts(
    bootstrap: str, ids: Iterable[str], topics: list[str] = DEFAULT_TOPICS, *, idle_s: float = 1.0
) -> Counter[str]:
    """How many records of ``topics`` (the event topics) carry each of ``ids`` (as their event id).

    Fails rather than return counts from a read cut short, which would look like loss.
    """
    wanted = set(ids)
    max_s = 120.0
    started = time.monotonic()
    records = read_topics(bootstrap, topics, idle_s=idle_s, max_s=max_s)
    assert time.monotonic() - started < max_s, "reading Kafka back hit its time limit"
    counts: Counter[str] = Counter()
    for record in records:
        event_id = record_event_id(record)
        if event_id in wanted:
            counts[event_id] += 1
    return counts

"""Event type → Kafka topic, key and headers. Pure: no framework imports.

Default: one topic per known type, ``<prefix>.<type name>``. A routing table in
the settings overrides it (exact types first, then globs in order). Types the
bridge does not know go to the fallback topic, so nothing Altinn adds is lost.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import orjson

from bridge.config import DedupeMode, DedupeSettings, RecordMode, Settings, TopicSettings
from bridge.events import CORRESPONDENCE_PREFIX, KNOWN_TYPES, Event, is_json_media_type

RECORD_CONTENT_TYPE = b"application/cloudevents+json; charset=utf-8"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Route:
    """Where and how one event is written."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers


class Router:
    """Decides the topic of an event type; built once from :class:`TopicSettings`."""

    def __init__(self, settings: TopicSettings, mode: RecordMode = RecordMode.STRUCTURED) -> None:
        self._settings = settings
        self._mode = mode
        self._exact = {r.pattern: r.topic for r in settings.routes if not _is_glob(r.pattern)}
        self._globs = [(r.pattern, r.topic) for r in settings.routes if _is_glob(r.pattern)]
        # Known types are decided once; unknown ones (rare) are decided per call.
        self._known = {
            CORRESPONDENCE_PREFIX + name: self._decide(CORRESPONDENCE_PREFIX + name) for name in KNOWN_TYPES
        }

    def topic_for(self, event_type: str) -> str:
        """The topic an event of ``event_type`` is written to (case-insensitive)."""
        lowered = event_type.lower()
        return self._known.get(lowered) or self._decide(lowered)

    def _decide(self, lowered: str) -> str:
        topic = self._exact.get(lowered)
        if topic is not None:
            return topic
        for pattern, glob_topic in self._globs:
            if fnmatchcase(lowered, pattern):
                return glob_topic
        if lowered.startswith(CORRESPONDENCE_PREFIX):
            name = lowered[len(CORRESPONDENCE_PREFIX) :]
            if name in KNOWN_TYPES:
                return f"{self._settings.prefix}.{name}"
        return self._settings.unknown

    def all_topics(self) -> list[str]:
        """Every topic this configuration can write to, for provisioning."""
        topics = set(self._known.values())
        topics.update(r.topic for r in self._settings.routes)
        topics.add(self._settings.unknown)
        topics.add(self._settings.deadletter)
        return sorted(topics)

    def route(self, event: Event) -> Route:
        """Topic, key (``resourceinstance``), value and CloudEvents headers for ``event``.

        Structured mode: the value is the event as received and the one header is
        ``content-type``, by which every SDK's auto-detecting reader (Python, JS,
        Java, Go) recognises structured mode; Python's takes any ``ce_`` header to
        mean binary mode, so the attributes consumers filter on are repeated as
        ``ce_`` headers only with ``BRIDGE_RECORD_CE_HEADERS=on``. Binary mode:
        the value is the event's ``data`` and every attribute is a ``ce_`` header.
        """
        topic = self.topic_for(event.type)
        key = event.resourceinstance.encode()
        if self._mode is RecordMode.BINARY:
            value, headers = binary_record(event.attributes)
            return Route(topic=topic, key=key, value=value, headers=headers)
        headers = [("content-type", RECORD_CONTENT_TYPE)]
        if self._settings.record_ce_headers:
            headers += [
                ("ce_specversion", event.specversion.encode()),
                ("ce_id", event.id.encode()),
                ("ce_source", event.source.encode()),
                ("ce_type", event.type.encode()),
            ]
            if event.time is not None:
                headers.append(("ce_time", event.time.encode()))
        return Route(topic=topic, key=key, value=event.raw, headers=headers)


def topics_to_provision(settings: Settings) -> list[str]:
    """Every topic the bridge needs.

    The event topics, then the dedupe state topic (``cleanup.policy=compact``)
    when dedupe is kept in Kafka, then the reconcile cursor topic (compacted, one
    partition) when reconciling is on.
    """
    topics = Router(settings.topics).all_topics()
    if settings.dedupe.mode is DedupeMode.KAFKA:
        topics.append(settings.dedupe.topic)
    if settings.reconcile.enabled:
        topics.append(settings.reconcile.cursor_topic)
    return topics


def state_topic_config(settings: DedupeSettings) -> dict[str, str]:
    """Topic configuration of the dedupe state topic.

    Compacted, and also deleted after the window plus a day: every key is unique,
    so compaction alone would keep the topic growing for ever.
    """
    retention_ms = int((settings.window_s + 86400) * 1000)
    return {"cleanup.policy": "compact,delete", "retention.ms": str(retention_ms)}


#: The cursor topic has one partition: the reconcilers' consumer group gives it to one member.
CURSOR_TOPIC_PARTITIONS = 1


def cursor_topic_config() -> dict[str, str]:
    """Topic configuration of the reconcile cursor topic: compacted, one record per resource kept."""
    return {"cleanup.policy": "compact"}


def binary_record(attributes: Mapping[str, Any]) -> tuple[bytes, Headers]:
    """Value and headers of an event in the CloudEvents Kafka binding's binary mode.

    The value is ``data`` (JSON-encoded unless it came as ``data_base64``), or
    empty when the event has none (Altinn's events carry no data); never a null
    value, which compacted topics would take as a deletion. ``datacontenttype``
    becomes ``content-type``; every other attribute a ``ce_<name>`` header,
    strings as they are, booleans as ``true``/``false``, other values as JSON.
    """
    headers: Headers = []
    value = b""
    content_type = attributes.get("datacontenttype")
    for name, attr in attributes.items():
        if name == "data":  # "data": null is an explicit null payload (JSON format 3.1.1)
            value = _data_value(attr, content_type)
        elif attr is None:  # a null attribute means unset (JSON format 2.2)
            continue
        elif name == "data_base64":
            value = base64.b64decode(attr)  # checked by parse_event
        elif name == "datacontenttype":
            headers.append(("content-type", str(attr).encode()))
        else:
            headers.append(("ce_" + name, _header_value(attr)))
    if "data" in attributes and content_type is None:
        headers.append(("content-type", b"application/json"))  # JSON format 3.1: data is JSON then
    return value, headers


def _data_value(data: object, content_type: object) -> bytes:
    """``data`` as record bytes: a string under a non-JSON content type is the text itself."""
    if isinstance(data, str) and isinstance(content_type, str) and not is_json_media_type(content_type):
        return data.encode()
    return orjson.dumps(data)


def _header_value(attr: object) -> bytes:
    if isinstance(attr, str):
        return attr.encode()
    if isinstance(attr, bool):
        return b"true" if attr else b"false"
    return orjson.dumps(attr)


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")

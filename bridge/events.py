"""Parse and validate the CloudEvents Altinn pushes. Pure: no framework imports.

What Altinn really sends is described in ``docs``/the README; the short version:
one structured CloudEvent per POST, ``specversion`` 1.0, Correspondence's own
attributes ``resource`` and ``resourceinstance``, ``time`` with up to seven
fractional digits, and a separate subscription-validation event that has none of
the Correspondence attributes.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias, get_args
from urllib.parse import unquote_to_bytes

import orjson

from bridge.personal_data import mask_national_ids

CORRESPONDENCE_PREFIX: Final = "no.altinn.correspondence."
VALIDATION_TYPE: Final = "platform.events.validatesubscription"

#: The types Correspondence emits today (short names, lower case). Altinn adds
#: new ones every few months; a type not listed here is still published (to the
#: fallback topic), it is only "unknown" for routing and metric labels.
KNOWN_TYPES: Final = frozenset(
    {
        "attachmentinitialized",
        "attachmentpublished",
        "attachmentuploadfailed",
        "attachmentexpired",
        "correspondenceinitialized",
        "correspondencepublished",
        "correspondencepublishfailed",
        "correspondencepurged",
        "correspondencereceiverread",
        "correspondencereceiverconfirmed",
        "correspondencereceiverneverread",
        "correspondencereceiverneverconfirmed",
        "notificationcreated",
        "correspondencenotificationcreationfailed",
        "correspondencenotificationfailed",
        "correspondencenotificationallfailed",
        "correspondencenotificationdelivered",
        "correspondencenotificationreminderdelivered",
    }
)

# RFC 3339 date-time: full date, "T" (any case), time with optional fraction of
# any length, and "Z" or a numeric offset. datetime.fromisoformat alone accepts
# far more (basic format, missing seconds), so the shape is checked first.
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")


#: Why a body can never be a valid event: ``InvalidEvent.reason``, a stable code for senders
#: (``reason`` in answers) and consumers (dead-letter header ``dlq_reason``).
InvalidReason: TypeAlias = Literal[
    "invalid_json",
    "not_an_object",
    "missing_attribute",
    "invalid_attribute",
    "unsupported_specversion",
]
#: Every :data:`InvalidReason`, in the order above (the OpenAPI document lists the same).
INVALID_REASONS: Final[tuple[InvalidReason, ...]] = get_args(InvalidReason)


class InvalidEvent(ValueError):
    """A body that can never become a valid event; permanent, never retried.

    ``reason`` is a short stable code (:data:`InvalidReason`), ``field``
    names the offending attribute when there is one, ``detail`` is for humans.
    ``event_id`` is the ``id`` the body carried, if any (masked, shortened), so
    that a dead-lettered event can be found by the id Altinn shows.
    """

    def __init__(self, reason: InvalidReason, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.reason: InvalidReason = reason
        self.detail = detail
        self.field = field
        self.event_id: str | None = None


@dataclass(frozen=True, slots=True)
class ValidationHandshake:
    """Altinn's subscription validation event: answered 2xx, never published."""

    id: str
    source: str


@dataclass(slots=True)
class Event:
    """A valid Correspondence event.

    ``raw`` holds the bytes exactly as received, ``attributes`` the parsed JSON
    object (every attribute, extensions and data).
    """

    raw: bytes
    attributes: Mapping[str, Any]
    id: str
    source: str
    type: str
    specversion: str
    resource: str
    resourceinstance: str
    time: str | None
    time_parsed: datetime | None
    subject: str | None
    alternativesubject: str | None

    @property
    def short_type(self) -> str | None:
        """The lower-case name after ``no.altinn.correspondence.``, if it has that prefix."""
        lowered = self.type.lower()
        if lowered.startswith(CORRESPONDENCE_PREFIX):
            return lowered[len(CORRESPONDENCE_PREFIX) :]
        return None

    @property
    def is_known_type(self) -> bool:
        """True for the 18 types Correspondence emits today (case-insensitive)."""
        return self.short_type in KNOWN_TYPES


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 timestamp; any number of fractional digits, any offset.

    Digits beyond microseconds are dropped (Altinn sends seven). Raises
    ``ValueError`` for anything that is not RFC 3339 or not a real instant.
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError("not an RFC 3339 date-time")
    if match.group(6) != "60" and value[10] == "T" and value[-1] != "z":
        # Python 3.11 reads this shape itself (any number of fractional digits, Z or an offset).
        return datetime.fromisoformat(value)
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = (fraction or "")[:6].ljust(6, "0")
    # A leap second (":60") is legal RFC 3339 but not a Python datetime; 61+ is nothing.
    sec = int(second)
    if sec > 60:  # noqa: PLR2004 - the leap second
        raise ValueError("second out of range")
    sec = min(sec, 59)
    tz = "+00:00" if offset in ("Z", "z") else offset
    return datetime.fromisoformat(f"{year}-{month}-{day}T{hour}:{minute}:{sec:02d}.{micro}{tz}")


def is_json_media_type(content_type: str) -> bool:
    """True for ``application/json``, ``text/json`` and any ``+json`` type (parameters ignored)."""
    media = content_type.partition(";")[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def structured_from_binary(headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    """The structured-mode JSON of an event received in HTTP binary content mode.

    Attributes come from ``ce-*`` headers (percent-decoded, per the CloudEvents
    HTTP binding), ``datacontenttype`` from ``Content-Type`` and the body is the
    event's ``data``: as JSON when the content type says JSON, else base64
    (also when there is no content type: the bytes are kept as they are).
    Raises :class:`InvalidEvent` when a JSON body does not parse.
    """
    attrs: dict[str, Any] = {}
    content_type = None
    for name, value in headers:
        lowered = name.lower()
        if lowered.startswith("ce-") and len(lowered) > len("ce-"):
            attrs[lowered[3:]] = _header_value(lowered[3:], value)
        elif lowered == "content-type":
            content_type = value
    if content_type:
        if not _is_utf8(content_type):
            raise InvalidEvent("invalid_attribute", "header 'Content-Type' is not UTF-8", "datacontenttype")
        attrs["datacontenttype"] = content_type
    add_binary_data(attrs, content_type, body, "body")
    return orjson.dumps(attrs)


def add_binary_data(attrs: dict[str, Any], content_type: str | None, data: bytes, what: str) -> None:
    """Put a binary-mode message's ``data`` into ``attrs`` (the structured form).

    As JSON when ``content_type`` says JSON, else as ``data_base64`` (also when there is
    no content type: the bytes are kept as they are); nothing when ``data`` is empty.
    Raises :class:`InvalidEvent` when a JSON ``data`` does not parse; ``what`` names it
    in the detail (an HTTP body, a Kafka record value).
    """
    if not data:
        return
    if content_type is not None and is_json_media_type(content_type):
        try:
            attrs["data"] = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent("invalid_json", f"binary-mode {what} is not valid JSON: {exc}") from None
    else:
        attrs["data_base64"] = base64.b64encode(data).decode()


def _header_value(attribute: str, value: str) -> str:
    """A ``ce-*`` header value decoded per the CloudEvents HTTP binding (3.1.3.2).

    A double-quoted value (older senders) is unquoted first, then
    percent-decoded; bytes that are not UTF-8 make the event invalid.
    """
    if len(value) >= 2 and value[0] == value[-1] == '"':  # noqa: PLR2004 - the two quotes
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    try:
        # aiohttp hands over header bytes that are not UTF-8 as surrogate escapes: back to bytes.
        return unquote_to_bytes(value.encode("utf-8", "surrogateescape")).decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        raise InvalidEvent(
            "invalid_attribute",
            f"header 'ce-{attribute}' is not UTF-8 once percent-decoded",
            attribute,
        ) from None


def _is_utf8(value: str) -> bool:
    """False for a header value that carried bytes that are not UTF-8 (surrogate escapes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _quoted(value: object) -> str:
    """A sent value for an error detail: shortened, national identity numbers masked.

    Details go back to the sender, into dead-letter headers and into logs.
    """
    shown = repr(value[:64]) if isinstance(value, str) else repr(value)[:64]
    return mask_national_ids(shown)


def _optional(attrs: Mapping[str, Any], name: str) -> str | None:
    value = attrs.get(name)
    if value is None or isinstance(value, str):
        return value
    raise InvalidEvent(
        "invalid_attribute",
        f"attribute '{name}' must be a string, got {type(value).__name__}",
        name,
    )


def _required(attrs: Mapping[str, Any], name: str) -> str:
    value = _optional(attrs, name)
    if value is None:
        raise InvalidEvent("missing_attribute", f"required attribute '{name}' is missing", name)
    if not value:
        raise InvalidEvent("invalid_attribute", f"attribute '{name}' must not be empty", name)
    return value


def parse_event(body: bytes) -> Event | ValidationHandshake:
    """Parse one structured-mode CloudEvent from ``body``.

    Returns a :class:`ValidationHandshake` for Altinn's subscription validation
    event, otherwise an :class:`Event`. Raises :class:`InvalidEvent` naming the
    field or cause for anything that can never be valid.
    """
    try:
        attrs = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", f"body is not valid JSON: {exc}") from None
    return event_from_json(body, attrs)


def event_from_json(body: bytes, attrs: object) -> Event | ValidationHandshake:
    """:func:`parse_event` for a body already parsed (``attrs``, e.g. an element of a batch)."""
    if type(attrs) is not dict:
        kind = "an array" if isinstance(attrs, list) else f"a JSON {type(attrs).__name__}"
        raise InvalidEvent("not_an_object", f"body must be one JSON object (a CloudEvent), got {kind}")
    try:
        return _from_attributes(body, attrs)
    except InvalidEvent as exc:
        sent_id = attrs.get("id")
        if isinstance(sent_id, str) and sent_id:
            exc.event_id = mask_national_ids(sent_id[:128])
        raise


def _from_attributes(body: bytes, attrs: dict[str, Any]) -> Event | ValidationHandshake:
    get = attrs.get
    specversion, event_id, source, event_type = get("specversion"), get("id"), get("source"), get("type")
    resource, resourceinstance, time = get("resource"), get("resourceinstance"), get("time")
    subject, alternativesubject = get("subject"), get("alternativesubject")
    # The common case, every rule in one expression: no call and no exception per attribute.
    # Anything else (and the validation event) takes the attribute-by-attribute path below,
    # which names what is wrong.
    if (
        type(specversion) is str
        and specversion == "1.0"
        and type(event_id) is str
        and event_id
        and type(source) is str
        and source
        and type(event_type) is str
        and event_type
        and type(resource) is str
        and resource
        and type(resourceinstance) is str
        and resourceinstance
        and (subject is None or type(subject) is str)
        and (alternativesubject is None or type(alternativesubject) is str)
        and "data_base64" not in attrs
        and event_type.lower() != VALIDATION_TYPE
    ):
        time_parsed = None
        if time is not None:
            if type(time) is not str:
                return _checked(body, attrs)
            try:
                time_parsed = parse_time(time)
            except ValueError:
                return _checked(body, attrs)
        return Event(
            body,
            attrs,
            event_id,
            source,
            event_type,
            specversion,
            resource,
            resourceinstance,
            time,
            time_parsed,
            subject,
            alternativesubject,
        )
    return _checked(body, attrs)


def _checked(body: bytes, attrs: dict[str, Any]) -> Event | ValidationHandshake:
    specversion = _required(attrs, "specversion")
    if specversion != "1.0":
        raise InvalidEvent(
            "unsupported_specversion",
            f"attribute 'specversion' must be \"1.0\", got {_quoted(specversion)}",
            "specversion",
        )
    event_id = _required(attrs, "id")
    source = _required(attrs, "source")
    event_type = _required(attrs, "type")

    if event_type.lower() == VALIDATION_TYPE:
        return ValidationHandshake(id=event_id, source=source)

    resource = _required(attrs, "resource")
    resourceinstance = _required(attrs, "resourceinstance")

    time = _optional(attrs, "time")
    time_parsed = None
    if time is not None:
        try:
            time_parsed = parse_time(time)
        except ValueError:
            raise InvalidEvent(
                "invalid_attribute",
                f"attribute 'time' must be an RFC 3339 date-time, got {_quoted(time)}",
                "time",
            ) from None

    data_base64 = attrs.get("data_base64")
    if data_base64 is not None:
        if "data" in attrs:
            raise InvalidEvent("invalid_attribute", "an event has 'data' or 'data_base64', not both", "data")
        try:
            base64.b64decode(data_base64, validate=True)
        except (TypeError, ValueError):  # binascii.Error is a ValueError; non-ASCII str raises ValueError
            raise InvalidEvent(
                "invalid_attribute", "attribute 'data_base64' must be a base64 string", "data_base64"
            ) from None

    return Event(
        raw=body,
        attributes=attrs,
        id=event_id,
        source=source,
        type=event_type,
        specversion=specversion,
        resource=resource,
        resourceinstance=resourceinstance,
        time=time,
        time_parsed=time_parsed,
        subject=_optional(attrs, "subject"),
        alternativesubject=_optional(attrs, "alternativesubject"),
    )


__all__ = [
    "CORRESPONDENCE_PREFIX",
    "INVALID_REASONS",
    "KNOWN_TYPES",
    "VALIDATION_TYPE",
    "Event",
    "InvalidEvent",
    "InvalidReason",
    "ValidationHandshake",
    "add_binary_data",
    "event_from_json",
    "is_json_media_type",
    "parse_event",
    "parse_time",
    "structured_from_binary",
]

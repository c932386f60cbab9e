"""Hypothesis strategies for what a sender can put on the wire.

Valid events are built from docs/http-api.md's rules (not from the parser), so that
"every valid event round-trips" tests the parser against the contract; the
rest is garbage of every kind: arbitrary bytes, JSON of the wrong shape, every
attribute with a wrong JSON type, broken UTF-8, deep nesting, huge numbers,
duplicate keys.
"""

from __future__ import annotations

import base64
import string
from typing import Any
from urllib.parse import quote

import orjson
from hypothesis import strategies as st

from bridge.events import CORRESPONDENCE_PREFIX, KNOWN_TYPES, VALIDATION_TYPE

#: The attributes the parser reads; every other name is an extension, kept untouched.
REQUIRED = ("specversion", "id", "source", "type", "resource", "resourceinstance")
OPTIONAL_STRINGS = ("time", "subject", "alternativesubject")
ATTRIBUTES = (*REQUIRED, *OPTIONAL_STRINGS, "data", "data_base64")

#: JSON scalars and containers, with numbers orjson can write back (64-bit ints, finite floats).
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
#: Any JSON value but a string (and but ``null`` when ``null`` means absent).
not_strings = json_values.filter(lambda v: not isinstance(v, str) and v is not None)

nonempty_text = st.text(min_size=1, max_size=40)


def _two(n: int) -> str:
    return f"{n:02d}"


@st.composite
def rfc3339_times(draw: st.DrawFn) -> str:
    """Real instants in RFC 3339: any year 1-9999, 0-9 fractional digits, ``Z``/``z`` or an offset."""
    moment = draw(st.datetimes())
    second = 60 if draw(st.integers(0, 20)) == 0 else moment.second  # a leap second now and then
    fraction = draw(st.text(string.digits, max_size=9))
    zone = draw(
        st.one_of(
            st.sampled_from(["Z", "z"]),
            st.builds(
                lambda sign, h, m: f"{sign}{_two(h)}:{_two(m)}",
                st.sampled_from("+-"),
                st.integers(0, 23),
                st.integers(0, 59),
            ),
        )
    )
    separator = draw(st.sampled_from("Tt"))
    return (
        f"{moment.year:04d}-{_two(moment.month)}-{_two(moment.day)}{separator}"
        f"{_two(moment.hour)}:{_two(moment.minute)}:{_two(second)}"
        + (f".{fraction}" if fraction else "")
        + zone
    )


def _random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.integers(0, 2 ** len(text) - 1))
    return "".join(c.upper() if flips >> i & 1 else c for i, c in enumerate(text))


_KNOWN_NAMES = st.sampled_from(sorted(KNOWN_TYPES))
_UNKNOWN_NAMES = st.text(string.ascii_lowercase, min_size=1, max_size=20)
_OTHER_TYPES = nonempty_text.filter(lambda t: t.lower() != VALIDATION_TYPE)
_EXTENSIONS = st.dictionaries(
    st.text(string.ascii_lowercase, min_size=1, max_size=10).filter(lambda n: n not in ATTRIBUTES),
    json_values,
    max_size=3,
)
_PRESENCE = st.sampled_from(["absent", "null", "value"])
_PAYLOAD = st.sampled_from(["none", "data", "data_base64", "null_base64"])
_SHORT_TEXT = st.text(max_size=40)
_SHORT_BINARY = st.binary(max_size=30)


_TIMES = rfc3339_times()


@st.composite
def event_types(draw: st.DrawFn, *, validation: bool = True) -> str:
    """Known Correspondence types in any case, unknown ones, and (optionally) the validation type."""
    kinds = ["known", "unknown", "any"] + (["validation"] if validation else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "known":
        return _random_case(draw, CORRESPONDENCE_PREFIX + draw(_KNOWN_NAMES))
    if kind == "validation":
        return _random_case(draw, VALIDATION_TYPE)
    if kind == "unknown":
        return CORRESPONDENCE_PREFIX + draw(_UNKNOWN_NAMES)
    return draw(_OTHER_TYPES)


@st.composite
def valid_events(draw: st.DrawFn, *, validation: bool = True) -> dict[str, Any]:
    """A JSON object docs/http-api.md says is a valid event (or Altinn's validation event)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(nonempty_text),
        "source": draw(nonempty_text),
        "type": draw(event_types(validation=validation)),
        "resource": draw(nonempty_text),
        "resourceinstance": draw(nonempty_text),
    }
    for name in OPTIONAL_STRINGS:
        choice = draw(st.sampled_from(["absent", "null", "value"]))
        if choice == "null":
            event[name] = None
        elif choice == "value":
            event[name] = draw(rfc3339_times() if name == "time" else st.text(max_size=40))
    payload = draw(st.sampled_from(["none", "data", "data_base64", "null_base64"]))
    if payload == "data":
        event["data"] = draw(json_values)
    elif payload == "data_base64":
        event["data_base64"] = base64.b64encode(draw(st.binary(max_size=30))).decode()
    elif payload == "null_base64":
        event["data_base64"] = None
    extension_names = st.text(string.ascii_lowercase, min_size=1, max_size=10).filter(
        lambda n: n not in ATTRIBUTES
    )
    extensions = draw(st.dictionaries(extension_names, json_values, max_size=3))
    for name, value in extensions.items():
        event.setdefault(name, value)
    order = draw(st.permutations(list(event)))  # Altinn guarantees no key order
    return {name: event[name] for name in order}


_WRONG_CANDIDATES = st.sampled_from([a for a in ATTRIBUTES if a != "data"])


@st.composite
def invalid_events(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A Correspondence event with exactly one attribute wrong, and that attribute's name."""
    event = draw(valid_events(validation=False))
    name = draw(_WRONG_CANDIDATES)
    return with_wrong(draw, event, name), name


def with_wrong(draw: st.DrawFn, event: dict[str, Any], name: str) -> dict[str, Any]:
    """``event`` with attribute ``name`` made invalid in one of the ways it can be."""
    event = dict(event)
    if name == "data_base64":
        event.pop("data", None)
        event[name] = draw(_WRONG_BASE64)
    elif name == "time":
        event[name] = draw(_WRONG_TIME)
    elif name in OPTIONAL_STRINGS:
        event[name] = draw(not_strings)
    else:
        event[name] = draw(_WRONG_SPECVERSION if name == "specversion" else _WRONG_REQUIRED)
        if event[name] == _DROP:
            del event[name]
    return event


def _bad_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        return True
    return False


def _not_rfc3339(text: str) -> bool:
    from bridge.events import parse_time  # noqa: PLC0415 - only to keep the generated values invalid

    try:
        parse_time(text)
    except ValueError:
        return True
    return False


bad_times = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "yesterday",
            "2026-02-30T00:00:00Z",  # no such day
            "2026-08-20T24:00:00Z",
            "2026-08-20T08:57:61Z",
            "2026-08-20T08:57:56",  # no offset
            "2026-08-20 08:57:56Z",
            "20260820T085756Z",  # basic format
            "2026-08-20T08:57:56.Z",
            "2026-08-20T08:57:56+24:00",
            "0000-01-01T00:00:00Z",
            "\u0662\u0660\u0662\u0666-08-20T08:57:56Z",  # Arabic-Indic digits
            "2026-08-20T08:57:56Z\n",
        ]
    ),
).filter(_not_rfc3339)


_DROP = "<drop the attribute>"
_WRONG_REQUIRED = st.one_of(not_strings, st.just(""), st.just(None), st.just(_DROP))
_WRONG_SPECVERSION = st.one_of(_WRONG_REQUIRED, st.text(max_size=5).filter(lambda v: v != "1.0"))
_WRONG_BASE64 = st.one_of(not_strings, st.text(min_size=1, max_size=20).filter(_bad_base64))
_WRONG_TIME = st.one_of(not_strings, bad_times)


#: Bytes that are not UTF-8 (lone continuation bytes, overlongs, surrogates, truncated sequences).
invalid_utf8 = st.sampled_from(
    [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\xc3"]
)


@st.composite
def garbage_bodies(draw: st.DrawFn) -> bytes:  # noqa: PLR0911 - one return per kind of garbage
    """Bodies of every kind: arbitrary bytes, JSON of any shape, broken events, damaged encodings."""
    kind = draw(
        st.sampled_from(
            ["bytes", "json", "valid", "invalid", "broken-utf8", "truncated", "duplicate-keys", "numbers"]
        )
    )
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return orjson.dumps(draw(json_values))
    if kind == "valid":
        return orjson.dumps(draw(valid_events()))
    body = orjson.dumps(draw(invalid_events())[0])
    if kind == "broken-utf8":
        at = draw(st.integers(0, len(body)))
        return body[:at] + draw(invalid_utf8) + body[at:]
    if kind == "truncated":
        return body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    if kind == "duplicate-keys":
        event = orjson.dumps(draw(valid_events()))
        name = draw(st.sampled_from(REQUIRED))
        return b'{"' + name.encode() + b'":' + orjson.dumps(draw(json_values)) + b"," + event[1:]
    number = draw(st.sampled_from([b"1e400", b"-1e400", str(2**70).encode(), b"-" + str(2**70).encode()]))
    name = draw(st.sampled_from(ATTRIBUTES))
    event = orjson.dumps(draw(valid_events()))
    return event[:-1] + b',"' + name.encode() + b'":' + number + b"}"


def percent_encoded(value: str) -> str:
    """A ``ce-*`` header value: UTF-8, percent-encoded (CloudEvents HTTP binding 3.1.3.2)."""
    return quote(value, safe="")

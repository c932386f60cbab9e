"""Type → topic, record key and CloudEvents headers."""

from __future__ import annotations

import orjson
import pytest

from bridge.events import KNOWN_TYPES, Event, parse_event
from bridge.routing import Router
from tests.support.events import FIXTURES, VALID, VALIDATION_FIXTURE
from tests.support.settings import make_settings

PREFIX = "no.altinn.correspondence."
UNKNOWN_TYPE = "no.altinn.correspondence.correspondencereceiverreplied"
VALID_EVENTS = [p for p in VALID if p != VALIDATION_FIXTURE]


def _router(**env: str) -> Router:
    return Router(make_settings(**env).topics)


def _event(name: str = "06-correspondencepublished.json", **changes: object) -> Event:
    attrs = orjson.loads((FIXTURES / "valid" / name).read_bytes())
    attrs.update(changes)
    attrs = {k: v for k, v in attrs.items() if v is not None}
    event = parse_event(orjson.dumps(attrs))
    assert isinstance(event, Event)
    return event


def _headers(event: Event, **env: str) -> dict[str, bytes]:
    route = _router(**env).route(event)
    names = [name for name, _ in route.headers]
    assert len(names) == len(set(names)), "no header twice"
    return dict(route.headers)


# --- default topics ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KNOWN_TYPES), ids=str)
def test_default_topic_for_each_known_type(name: str):
    assert _router().topic_for(PREFIX + name) == f"altinn.correspondence.{name}"


def test_eighteen_known_types_get_eighteen_distinct_topics():
    router = _router()
    topics = {router.topic_for(PREFIX + name) for name in KNOWN_TYPES}
    assert len(KNOWN_TYPES) == 18
    assert len(topics) == 18


@pytest.mark.parametrize(
    "event_type",
    [
        UNKNOWN_TYPE,
        "no.altinn.correspondence.Published",
        "platform.events.something",
        "correspondencepublished",
        "no.altinn.correspondence.",
        "",
    ],
    ids=["future-type", "old-doc-type", "other-prefix", "short-name", "prefix-only", "empty"],
)
def test_unknown_type_goes_to_fallback(event_type: str):
    assert _router().topic_for(event_type) == "altinn.correspondence.unknown"


@pytest.mark.parametrize(
    "event_type",
    [
        "No.Altinn.Correspondence.CorrespondencePublished",
        "NO.ALTINN.CORRESPONDENCE.CORRESPONDENCEPUBLISHED",
        "no.altinn.correspondence.correspondencePublished",
    ],
    ids=["title-case", "upper-case", "camel-name"],
)
def test_topic_is_case_insensitive(event_type: str):
    assert _router().topic_for(event_type) == "altinn.correspondence.correspondencepublished"


def test_custom_prefix():
    router = _router(BRIDGE_TOPIC_PREFIX="acme.altinn")
    assert router.topic_for(PREFIX + "attachmentexpired") == "acme.altinn.attachmentexpired"
    assert router.topic_for("No.Altinn.Correspondence.AttachmentExpired") == "acme.altinn.attachmentexpired"


def test_custom_unknown_topic():
    router = _router(BRIDGE_TOPIC_UNKNOWN="acme.unknown")
    assert router.topic_for(UNKNOWN_TYPE) == "acme.unknown"
    assert router.topic_for(PREFIX + "correspondencepurged") == "altinn.correspondence.correspondencepurged"


@pytest.mark.parametrize("path", VALID_EVENTS, ids=[p.stem for p in VALID_EVENTS])
def test_every_valid_fixture_lands_on_its_type_topic(path):
    event = parse_event(path.read_bytes())
    assert isinstance(event, Event)
    name = event.short_type if event.is_known_type else "unknown"
    assert _router().route(event).topic == f"altinn.correspondence.{name}"


# --- routing table -----------------------------------------------------------


def test_exact_route_beats_glob_listed_before_it():
    router = _router(
        BRIDGE_TOPIC_ROUTES=(
            "no.altinn.correspondence.correspondence*=correspondence.all,"
            "no.altinn.correspondence.correspondencepublished=correspondence.published"
        )
    )
    assert router.topic_for(PREFIX + "correspondencepublished") == "correspondence.published"
    assert router.topic_for(PREFIX + "correspondencepurged") == "correspondence.all"
    assert router.topic_for(PREFIX + "attachmentpublished") == "altinn.correspondence.attachmentpublished"


def test_exact_route_is_case_insensitive():
    router = _router(BRIDGE_TOPIC_ROUTES="No.Altinn.Correspondence.CorrespondencePublished=published")
    assert router.topic_for("NO.ALTINN.CORRESPONDENCE.CORRESPONDENCEPUBLISHED") == "published"
    assert router.topic_for(PREFIX + "correspondencepublished") == "published"


def test_globs_tried_in_the_order_given():
    first_wins = _router(
        BRIDGE_TOPIC_ROUTES=(
            "no.altinn.correspondence.correspondencenotification*=notifications,"
            "no.altinn.correspondence.correspondence*=correspondence"
        )
    )
    assert first_wins.topic_for(PREFIX + "correspondencenotificationfailed") == "notifications"
    assert first_wins.topic_for(PREFIX + "correspondencepurged") == "correspondence"

    broad_first = _router(
        BRIDGE_TOPIC_ROUTES=(
            "no.altinn.correspondence.correspondence*=correspondence,"
            "no.altinn.correspondence.correspondencenotification*=notifications"
        )
    )
    assert broad_first.topic_for(PREFIX + "correspondencenotificationfailed") == "correspondence"


def test_question_mark_glob():
    router = _router(BRIDGE_TOPIC_ROUTES="no.altinn.correspondence.attachment?????????=attachments.nine")
    assert router.topic_for(PREFIX + "attachmentpublished") == "attachments.nine"
    assert router.topic_for(PREFIX + "attachmentexpired") == "altinn.correspondence.attachmentexpired"


def test_glob_also_catches_unknown_types():
    router = _router(BRIDGE_TOPIC_ROUTES="no.altinn.correspondence.*=correspondence.everything")
    assert router.topic_for(UNKNOWN_TYPE) == "correspondence.everything"
    assert router.topic_for("platform.events.something") == "altinn.correspondence.unknown"


def test_star_sends_everything_to_one_topic():
    router = _router(BRIDGE_TOPIC_ROUTES="*=single.topic")
    for name in KNOWN_TYPES:
        assert router.topic_for(PREFIX + name) == "single.topic"
    assert router.topic_for(UNKNOWN_TYPE) == "single.topic"
    assert router.topic_for("No.Altinn.Correspondence.CorrespondencePublished") == "single.topic"
    assert router.topic_for("something.else.entirely") == "single.topic"


def test_route_for_unknown_type_only():
    router = _router(BRIDGE_TOPIC_ROUTES=f"{UNKNOWN_TYPE}=replies")
    assert router.topic_for(UNKNOWN_TYPE) == "replies"
    assert router.topic_for(UNKNOWN_TYPE.upper()) == "replies"


# --- key and headers ---------------------------------------------------------


def test_key_is_resourceinstance_utf8():
    event = _event()
    route = _router().route(event)
    assert route.key == b"6b4cb242-4a23-4596-a217-beaddbc496cb"


def test_key_non_ascii_is_utf8():
    event = _event(resourceinstance="korrespondanse-æøå")
    assert _router().route(event).key == "korrespondanse-æøå".encode()


def test_headers_by_default_are_only_the_content_type():
    # Any ce_ header makes the Python SDK's from_kafka_event read the record as binary mode.
    assert _headers(_event()) == {"content-type": b"application/cloudevents+json; charset=utf-8"}


def test_headers_with_ce_headers_on():
    event = _event()
    assert _headers(event, BRIDGE_RECORD_CE_HEADERS="on") == {
        "content-type": b"application/cloudevents+json; charset=utf-8",
        "ce_specversion": b"1.0",
        "ce_id": b"8e81973e-0bec-47b0-b898-d190f9ebdacc",
        "ce_source": b"https://platform.tt02.altinn.no/correspondence/api/v1/correspondence",
        "ce_type": b"no.altinn.correspondence.correspondencepublished",
        "ce_time": b"2026-11-20T08:05:56.1234565Z",
    }


def test_header_values_are_bytes_and_names_are_str():
    route = _router().route(_event())
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in route.headers)


def test_ce_type_keeps_the_received_casing():
    event = _event(type="No.Altinn.Correspondence.CorrespondencePublished")
    route = _router(BRIDGE_RECORD_CE_HEADERS="on").route(event)
    assert dict(route.headers)["ce_type"] == b"No.Altinn.Correspondence.CorrespondencePublished"
    assert route.topic == "altinn.correspondence.correspondencepublished"


def test_ce_time_is_the_time_as_received():
    event = _event("25-extra-attribute.json")
    assert _headers(event, BRIDGE_RECORD_CE_HEADERS="on")["ce_time"] == b"2026-11-20T09:04:00+01:00"


def test_no_ce_time_without_time():
    event = _event(time=None)
    assert event.time is None
    headers = _headers(event, BRIDGE_RECORD_CE_HEADERS="on")
    assert "ce_time" not in headers
    assert "ce_id" in headers


def test_no_ce_headers_for_subject_or_extensions():
    # Subjects may carry national identity numbers; they stay in the value only.
    event = _event("22-person-recipient-national-id.json")
    headers = _router(BRIDGE_RECORD_CE_HEADERS="on").route(event).headers
    assert not any(b"02056712345" in v for _, v in headers)
    assert {k for k, _ in headers} <= {
        "content-type",
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
    }


# --- all_topics --------------------------------------------------------------


def test_all_topics_default():
    topics = _router().all_topics()
    assert topics == sorted(
        [f"altinn.correspondence.{name}" for name in KNOWN_TYPES]
        + ["altinn.correspondence.unknown", "altinn.correspondence.deadletter"]
    )


def test_all_topics_with_routes():
    router = _router(
        BRIDGE_TOPIC_ROUTES="*=single.topic,no.altinn.correspondence.x=never.matched",
        BRIDGE_TOPIC_DEADLETTER="acme.dead",
        BRIDGE_TOPIC_UNKNOWN="acme.unknown",
    )
    topics = router.all_topics()
    assert "single.topic" in topics
    assert "never.matched" in topics
    assert "acme.dead" in topics
    assert "acme.unknown" in topics
    assert not any(t.startswith("altinn.correspondence.") for t in topics)
    assert topics == sorted(set(topics))

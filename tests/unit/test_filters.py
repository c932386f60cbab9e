"""The organisation's local filters: sources, resources, types, alternative subjects."""

from __future__ import annotations

import orjson
import pytest

from bridge.events import Event, parse_event
from bridge.filters import Filters
from tests.support.events import FIXTURES, VALID, VALIDATION_FIXTURE
from tests.support.settings import make_settings

VALID_EVENTS = [p for p in VALID if p != VALIDATION_FIXTURE]
PRODUCTION = FIXTURES / "valid" / "23-production-source.json"
NO_ALTERNATIVESUBJECT = FIXTURES / "valid" / "21-person-recipient-no-alternativesubject.json"
NATIONAL_ID_EVENT = FIXTURES / "valid" / "22-person-recipient-national-id.json"
FILTER_NAMES = {"source", "resource", "type", "alternativesubject"}
TT02_EVENTS = [p for p in VALID_EVENTS if p != PRODUCTION]
DEV_SOURCE = "https://altinn-dev-api.azure-api.net/correspondence/api/v1/correspondence"
RESOURCE = "urn:altinn:resource:altinn-correspondence-test-resource-1"


def _filters(**env: str) -> Filters:
    return Filters(make_settings(**env).filters)


def _event(name: str = "06-correspondencepublished.json", **changes: str) -> Event:
    attrs = orjson.loads((FIXTURES / "valid" / name).read_bytes())
    attrs.update(changes)
    event = parse_event(orjson.dumps(attrs))
    assert isinstance(event, Event)
    return event


def _fixture(path) -> Event:
    event = parse_event(path.read_bytes())
    assert isinstance(event, Event)
    return event


@pytest.mark.parametrize("path", VALID_EVENTS, ids=[p.stem for p in VALID_EVENTS])
def test_no_filters_everything_passes(path):
    assert _filters().rejects(_fixture(path)) is None


# --- sources -----------------------------------------------------------------


@pytest.mark.parametrize("path", TT02_EVENTS, ids=[p.stem for p in TT02_EVENTS])
def test_tt02_preset_keeps_tt02_events(path):
    assert _filters(BRIDGE_FILTER_SOURCES="tt02").rejects(_fixture(path)) is None


@pytest.mark.parametrize(
    "source",
    [
        "https://platform.altinn.no/correspondence/api/v1/correspondence",
        DEV_SOURCE,
        "https://platform.tt02.altinn.no.evil.example/correspondence/api/v1/correspondence",
        "https://platform.tt02.altinn.no/correspondence/api/v1evil/correspondence",
        "https://platform.tt02.altinn.no/events/api/v1/subscriptions/1",
        "https://platform.at22.altinn.cloud/correspondence/api/v1/correspondence",
    ],
    ids=["production", "internal-dev", "look-alike-host", "look-alike-path", "other-api", "at22"],
)
def test_tt02_preset_rejects_other_sources(source: str):
    assert _filters(BRIDGE_FILTER_SOURCES="tt02").rejects(_event(source=source)) == "source"


def test_tt02_preset_rejects_production_fixture():
    assert _filters(BRIDGE_FILTER_SOURCES="tt02").rejects(_fixture(PRODUCTION)) == "source"


def test_production_preset_keeps_production_fixture_only():
    filters = _filters(BRIDGE_FILTER_SOURCES="production")
    assert filters.rejects(_fixture(PRODUCTION)) is None
    assert filters.rejects(_event()) == "source"


def test_several_sources():
    filters = _filters(BRIDGE_FILTER_SOURCES="tt02,production")
    assert filters.rejects(_fixture(PRODUCTION)) is None
    assert filters.rejects(_event()) is None
    assert filters.rejects(_event(source=DEV_SOURCE)) == "source"


@pytest.mark.parametrize(
    ("allowed", "source", "passes"),
    [
        ("https://platform.altinn.no", "https://platform.altinn.no", True),
        ("https://platform.altinn.no", "https://platform.altinn.no/correspondence/api/v1/attachment", True),
        ("https://platform.altinn.no/", "https://platform.altinn.no/correspondence", True),
        ("https://platform.altinn.no", "https://platform.altinn.no.evil.example/correspondence", False),
        ("https://platform.altinn.no", "https://platform.altinn.nope", False),
        ("https://platform.altinn.no", "http://platform.altinn.no/correspondence", False),
    ],
    ids=["equal", "below", "trailing-slash-entry", "look-alike-host", "longer-host", "http-vs-https"],
)
def test_url_source_matched_at_slash_boundary(allowed: str, source: str, passes: bool):
    expected = None if passes else "source"
    assert _filters(BRIDGE_FILTER_SOURCES=allowed).rejects(_event(source=source)) == expected


# --- resources ---------------------------------------------------------------


def test_resources_exact():
    filters = _filters(BRIDGE_FILTER_RESOURCES=RESOURCE)
    assert filters.rejects(_event()) is None
    assert filters.rejects(_fixture(PRODUCTION)) == "resource"
    for near_miss in (RESOURCE + "0", RESOURCE[:-2], RESOURCE.upper(), RESOURCE + " "):
        assert filters.rejects(_event(resource=near_miss)) == "resource"


def test_several_resources():
    filters = _filters(BRIDGE_FILTER_RESOURCES="urn:altinn:resource:some-prod-resource,urn:altinn:resource:x")
    assert filters.rejects(_fixture(PRODUCTION)) is None
    assert filters.rejects(_event()) == "resource"


# --- types -------------------------------------------------------------------


@pytest.mark.parametrize(
    "configured",
    [
        "correspondencepublished",
        "CorrespondencePublished",
        "no.altinn.correspondence.correspondencepublished",
        "No.Altinn.Correspondence.CorrespondencePublished",
    ],
    ids=["short", "short-mixed-case", "full", "full-mixed-case"],
)
def test_types_short_and_full_names_case_insensitive(configured: str):
    filters = _filters(BRIDGE_FILTER_TYPES=configured)
    assert filters.rejects(_event()) is None
    assert filters.rejects(_event(type="NO.ALTINN.CORRESPONDENCE.CORRESPONDENCEPUBLISHED")) is None
    assert filters.rejects(_event("08-correspondencepurged.json")) == "type"


def test_types_filter_can_keep_an_unknown_type():
    filters = _filters(BRIDGE_FILTER_TYPES="correspondencereceiverreplied")
    assert filters.rejects(_fixture(FIXTURES / "valid" / "24-future-unknown-type.json")) is None
    assert filters.rejects(_event()) == "type"


# --- alternative subjects ----------------------------------------------------


def test_alternativesubject_exact():
    filters = _filters(BRIDGE_FILTER_ALTERNATIVESUBJECTS="/organisation/310654302")
    assert filters.rejects(_event()) is None
    assert filters.rejects(_event("01-attachmentinitialized.json")) == "alternativesubject"
    assert filters.rejects(_event(alternativesubject="/organisation/3106543021")) == "alternativesubject"


def test_alternativesubject_organisation_prefix():
    filters = _filters(BRIDGE_FILTER_ALTERNATIVESUBJECTS="/organisation/")
    assert filters.rejects(_event()) is None
    assert filters.rejects(_event("01-attachmentinitialized.json")) is None
    assert filters.rejects(_fixture(NATIONAL_ID_EVENT)) == "alternativesubject"


def test_alternativesubject_star_prefix():
    filters = _filters(BRIDGE_FILTER_ALTERNATIVESUBJECTS="/organisation/3106*")
    assert filters.rejects(_event()) is None
    assert filters.rejects(_event("01-attachmentinitialized.json")) == "alternativesubject"


def test_alternativesubject_lone_star_needs_one():
    filters = _filters(BRIDGE_FILTER_ALTERNATIVESUBJECTS="*")
    assert filters.rejects(_event()) is None
    assert filters.rejects(_fixture(NATIONAL_ID_EVENT)) is None
    assert filters.rejects(_fixture(NO_ALTERNATIVESUBJECT)) == "alternativesubject"


@pytest.mark.parametrize(
    "configured",
    ["/organisation/310654302", "/organisation/", "/person/*", "*"],
    ids=["exact", "slash-prefix", "star-prefix", "star"],
)
def test_event_without_alternativesubject_is_filtered_when_set(configured: str):
    event = _fixture(NO_ALTERNATIVESUBJECT)
    assert event.alternativesubject is None
    assert _filters(BRIDGE_FILTER_ALTERNATIVESUBJECTS=configured).rejects(event) == "alternativesubject"


def test_mixed_exact_and_prefix_entries():
    filters = _filters(BRIDGE_FILTER_ALTERNATIVESUBJECTS="/organisation/991825827, /person/")
    assert filters.rejects(_event("01-attachmentinitialized.json")) is None
    assert filters.rejects(_fixture(NATIONAL_ID_EVENT)) is None
    assert filters.rejects(_event()) == "alternativesubject"


# --- combined, and what is returned ------------------------------------------


def test_all_filters_set_and_event_passes():
    filters = _filters(
        BRIDGE_FILTER_SOURCES="tt02",
        BRIDGE_FILTER_RESOURCES=RESOURCE,
        BRIDGE_FILTER_TYPES="correspondencereceiverneverread",
        BRIDGE_FILTER_ALTERNATIVESUBJECTS="/person/",
    )
    assert filters.rejects(_fixture(NATIONAL_ID_EVENT)) is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BRIDGE_FILTER_SOURCES": "production"}, "source"),
        ({"BRIDGE_FILTER_RESOURCES": "urn:altinn:resource:other"}, "resource"),
        ({"BRIDGE_FILTER_TYPES": "attachmentpublished"}, "type"),
        ({"BRIDGE_FILTER_ALTERNATIVESUBJECTS": "/organisation/"}, "alternativesubject"),
        ({"BRIDGE_FILTER_ALTERNATIVESUBJECTS": "/person/1*"}, "alternativesubject"),
    ],
    ids=["source", "resource", "type", "alternativesubject", "alternativesubject-prefix"],
)
def test_returned_name_is_the_filter_name_without_the_value(env: dict[str, str], expected: str):
    # The name goes into logs and metric labels; the event (fixture 22) carries a national id.
    event = _fixture(NATIONAL_ID_EVENT)
    name = _filters(**env).rejects(event)
    assert name == expected
    assert name in FILTER_NAMES
    assert "02056712345" not in name
    assert "/" not in name
    assert ":" not in name

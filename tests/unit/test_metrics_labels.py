"""The metric ``type`` label is bounded: 18 known names, ``validatesubscription``, ``other``."""

from __future__ import annotations

import random
import string

import pytest

from bridge.events import KNOWN_TYPES, Event, parse_event
from bridge.metrics import method_label, type_label
from tests.support.events import VALID, VALIDATION_FIXTURE

ALLOWED = KNOWN_TYPES | {"validatesubscription", "other"}


@pytest.mark.parametrize("name", sorted(KNOWN_TYPES), ids=str)
def test_known_type_gives_its_short_name(name: str):
    assert type_label(f"no.altinn.correspondence.{name}") == name


@pytest.mark.parametrize(
    "event_type",
    ["No.Altinn.Correspondence.CorrespondencePublished", "NO.ALTINN.CORRESPONDENCE.CORRESPONDENCEPUBLISHED"],
    ids=["title-case", "upper-case"],
)
def test_known_type_case_insensitive(event_type: str):
    assert type_label(event_type) == "correspondencepublished"


@pytest.mark.parametrize(
    "event_type",
    ["platform.events.validatesubscription", "Platform.Events.ValidateSubscription"],
    ids=["as-sent", "mixed-case"],
)
def test_validation_type(event_type: str):
    assert type_label(event_type) == "validatesubscription"


@pytest.mark.parametrize(
    "event_type",
    [
        "no.altinn.correspondence.correspondencereceiverreplied",
        "no.altinn.correspondence.Published",
        "no.altinn.correspondence.",
        "correspondencepublished",
        "validatesubscription",
        "platform.events.validatesubscription.extra",
        "other",
        "",
        "urn:altinn:person:identifier-no:02056712345",
        "x" * 10_000,
    ],
    ids=[
        "future-type",
        "old-doc-type",
        "prefix-only",
        "short-name",
        "validation-short-name",
        "validation-with-suffix",
        "literal-other",
        "empty",
        "personal-data",
        "huge",
    ],
)
def test_unknown_strings_are_other(event_type: str):
    assert type_label(event_type) == "other"


@pytest.mark.parametrize(
    "value",
    [None, 42, 4.2, True, b"no.altinn.correspondence.correspondencepublished", ["x"], {"type": "x"}],
    ids=["none", "int", "float", "bool", "bytes", "list", "dict"],
)
def test_non_strings_are_other(value: object):
    assert type_label(value) == "other"


def test_every_valid_fixture_gets_an_allowed_label():
    labels = {}
    for path in VALID:
        parsed = parse_event(path.read_bytes())
        labels[path.stem] = type_label(parsed.type) if isinstance(parsed, Event) else None
    assert labels.pop(VALIDATION_FIXTURE.stem) is None
    assert labels["24-future-unknown-type"] == "other"
    assert set(labels.values()) == KNOWN_TYPES | {"other"}
    assert type_label("platform.events.validatesubscription") == "validatesubscription"


def test_random_strings_give_a_bounded_label_set():
    rng = random.Random(20261120)  # fixed seed: a failure is reproducible
    alphabet = string.ascii_letters + string.digits + string.punctuation + " æøåÆØÅ"
    labels = set()
    for _ in range(10_000):
        length = rng.randint(0, 80)
        text = "".join(rng.choice(alphabet) for _ in range(length))
        if rng.random() < 0.5:
            text = "no.altinn.correspondence." + text
        labels.add(type_label(text))
    assert labels == {"other"}


def test_all_labels_produced_are_a_subset_of_the_allowed_set():
    inputs: list[object] = [
        *(f"no.altinn.correspondence.{name}" for name in KNOWN_TYPES),
        *(f"No.Altinn.Correspondence.{name.upper()}" for name in KNOWN_TYPES),
        "platform.events.validatesubscription",
        "no.altinn.correspondence.somethingnew",
        None,
        123,
    ]
    labels = {type_label(value) for value in inputs}
    assert labels <= ALLOWED
    assert labels == ALLOWED


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD", "OPTIONS"])
def test_standard_method_is_its_own_label(method: str):
    assert method_label(method) == method


def test_any_other_method_is_other():
    rng = random.Random(7)
    sent = {"".join(rng.choices(string.ascii_uppercase, k=8)) for _ in range(50)} | {"get", "PROPFIND"}
    assert {method_label(m) for m in sent} == {"other"}

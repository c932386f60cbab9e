"""docs/schemas/correspondence-event.schema.json: generated from docs/asyncapi.yaml, true to the events.

Every real event (the valid fixtures) passes it; every JSON object the bridge refuses fails it,
and so does the subscription validation event, which is never published.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import orjson
import pytest

from devtools.event_schema import SCHEMA, render
from tests.support.events import INVALID, VALID_EVENTS, VALIDATION_FIXTURE, fixture_ids


def _validator() -> jsonschema.Draft7Validator:
    schema: dict[str, Any] = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_schema_file_is_generated_from_the_asyncapi_document():
    assert SCHEMA.read_text() == render(), "stale: python -m devtools.event_schema --write"


def test_schema_is_a_draft_7_schema_of_the_event():
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert {"id", "source", "type", "resource", "resourceinstance"} <= set(schema["required"])


@pytest.mark.parametrize("path", VALID_EVENTS, ids=fixture_ids(VALID_EVENTS))
def test_every_real_event_passes(path):
    _validator().validate(orjson.loads(path.read_bytes()))


def _is_json(path) -> bool:
    try:
        orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return False
    return True


#: The invalid fixtures that are JSON at all (a body that is not has no schema to speak of).
_INVALID_JSON = [p for p in INVALID if _is_json(p)]


@pytest.mark.parametrize("path", _INVALID_JSON, ids=fixture_ids(_INVALID_JSON))
def test_every_refused_body_fails(path):
    body = orjson.loads(path.read_bytes())
    assert not _validator().is_valid(body), f"{path.name} passes the schema but the bridge refuses it"


def test_most_invalid_fixtures_are_json():
    assert len(_INVALID_JSON) == len(INVALID) - 1  # not-json.txt


def test_the_validation_event_is_not_an_event_of_the_schema():
    assert not _validator().is_valid(orjson.loads(VALIDATION_FIXTURE.read_bytes()))


def test_the_check_can_fail():
    event = orjson.loads(VALID_EVENTS[0].read_bytes())
    del event["resourceinstance"]
    with pytest.raises(jsonschema.ValidationError, match="resourceinstance"):
        _validator().validate(event)

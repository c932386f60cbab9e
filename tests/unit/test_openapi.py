"""The OpenAPI document: valid 3.1, checked in as the code makes it, and true to the app.

What the live app answers is checked against it by the fuzz tests (tests/fuzz).
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import orjson
import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from bridge import errors
from bridge.app import create_app
from bridge.events import ValidationHandshake, parse_event
from bridge.openapi import BINARY_DATA_MEDIA_TYPE, EVENT_EXAMPLE, VALIDATION_EXAMPLE, document
from devtools import openapi_export
from tests.conftest import INVALID, VALID, FakePublisher, make_settings

TOKEN = "unit-test-token-0123456789abcdef"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

SETTINGS = {
    "token auth": {"BRIDGE_AUTH": "token", "BRIDGE_AUTH_TOKENS": TOKEN},
    "no auth": {"BRIDGE_AUTH": "none"},
    "reject policy, small limits": {
        "BRIDGE_INVALID_EVENT_POLICY": "reject",
        "BRIDGE_MAX_BODY_BYTES": "2048",
        "BRIDGE_MAX_BATCH_EVENTS": "3",
        "BRIDGE_ALLOWED_NETWORKS": "altinn-production",
    },
}


def schema_validator(doc: dict[str, Any], name: str) -> jsonschema_rs.Validator:
    """A validator for ``#/components/schemas/<name>`` of ``doc`` (ECMA-262 regex semantics)."""
    return jsonschema_rs.validator_for(
        {"components": doc["components"], "$ref": f"#/components/schemas/{name}"}
    )


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_checked_in_document_is_what_the_code_makes():
    assert openapi_export.PATH.read_bytes() == openapi_export.render(), (
        "docs/openapi.json is stale: python -m devtools.openapi_export"
    )


def test_checked_in_document_is_for_token_auth():
    doc = orjson.loads(openapi_export.PATH.read_bytes())
    assert "/api/v1/events/{token}" in doc["paths"]
    assert doc["paths"]["/api/v1/events"]["post"]["security"] == [{"bearer": []}]
    assert openapi_export.ENV["BRIDGE_AUTH_TOKENS"] not in openapi_export.render().decode()


@pytest.mark.parametrize("env", SETTINGS.values(), ids=SETTINGS.keys())
def test_document_is_valid_openapi_3_1(env):
    doc = document(make_settings(**env))
    assert doc["openapi"].startswith("3.1.")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_checked_in_document_is_valid_openapi_3_1():
    validate(orjson.loads(openapi_export.PATH.read_bytes()), cls=OpenAPIV31SpecValidator)


@pytest.mark.parametrize("env", SETTINGS.values(), ids=SETTINGS.keys())
def test_every_route_of_the_app_is_described_and_nothing_else(env):
    settings = make_settings(**env)
    app = create_app(settings, publisher=FakePublisher())
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"  # aiohttp adds HEAD to every GET
    }
    assert operations(document(settings)) == routes


def test_token_route_and_bearer_scheme_only_with_token_auth():
    with_token = document(make_settings(BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS=TOKEN))
    without = document(make_settings(BRIDGE_AUTH="none"))
    assert with_token["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": with_token["components"]["securitySchemes"]["bearer"]["description"],
    }
    path_op = with_token["paths"]["/api/v1/events/{token}"]["post"]
    assert path_op["security"] == []
    assert "401" in path_op["responses"]
    assert "securitySchemes" not in without["components"]
    assert "/api/v1/events/{token}" not in without["paths"]
    assert "401" not in without["paths"]["/api/v1/events"]["post"]["responses"]
    assert TOKEN not in orjson.dumps(with_token).decode()


def _error_classes() -> list[type[errors.BridgeError]]:
    found, todo = [], [errors.BridgeError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_the_code_can_raise_is_described_with_its_status(cls):
    doc = document(make_settings(BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS=TOKEN))
    problem = doc["components"]["schemas"][f"Problem{cls.status}"]["allOf"][1]["properties"]
    assert "urn:altinn-kafka-bridge:problem:" + cls.slug in problem["type"]["enum"]
    assert cls.title in problem["title"]["enum"]
    responses = doc["paths"]["/api/v1/events"]["post"]["responses"]
    assert str(cls.status) in responses
    if cls.status == 503:
        ref = responses["503"]["$ref"].rsplit("/", 1)[1]
        assert "Retry-After" in doc["components"]["responses"][ref]["headers"]


def test_limits_come_from_the_settings():
    doc = document(make_settings(BRIDGE_MAX_BATCH_EVENTS="7", BRIDGE_MAX_BODY_BYTES="4096"))
    batch = doc["components"]["requestBodies"]["Events"]["content"]["application/cloudevents-batch+json"]
    assert batch["schema"]["maxItems"] == 7
    assert "4096 bytes" in doc["components"]["requestBodies"]["Events"]["description"]


def test_examples_are_valid_events_the_parser_accepts():
    doc = document(make_settings())
    content = doc["components"]["requestBodies"]["Events"]["content"]["application/json"]
    validator = schema_validator(doc, "CloudEvent")
    for example in content["examples"].values():
        validator.validate(example["value"])
        parse_event(orjson.dumps(example["value"]))
    assert isinstance(parse_event(orjson.dumps(VALIDATION_EXAMPLE)), ValidationHandshake)
    assert parse_event(orjson.dumps(EVENT_EXAMPLE)).is_known_type


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_every_valid_fixture_matches_the_event_schema(path):
    schema_validator(document(make_settings()), "CloudEvent").validate(orjson.loads(path.read_bytes()))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_no_invalid_fixture_matches_the_event_schema(path):
    try:
        body = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return  # not JSON at all: no schema can match
    assert not schema_validator(document(make_settings()), "CloudEvent").is_valid(body)


def test_served_media_types_are_the_views():
    from bridge import views  # noqa: PLC0415 - the constants under test

    content = document(make_settings())["components"]["requestBodies"]["Events"]["content"]
    assert set(content) == {*views.STRUCTURED_TYPES, views.BATCH_MEDIA_TYPE, BINARY_DATA_MEDIA_TYPE}

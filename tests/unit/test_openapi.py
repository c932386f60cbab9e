"""The OpenAPI document (``bridge/openapi.json``): valid 3.1, served as it is, and true to the code.

The document is written by hand and is the same for every configuration. These
tests tie each fact in it to the code that makes it true: routes, statuses,
problem types, media types, enums and the defaults of the limits it quotes.
What the live app answers is checked against it by the fuzz tests (tests/fuzz).
"""

from __future__ import annotations

import json
import re
import string
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from prometheus_client import CONTENT_TYPE_LATEST

import bridge
from bridge import errors, events, filters, http_contract, views
from bridge.app import create_app
from bridge.auth import MIN_TOKEN_LENGTH, TOKEN_ALPHABET
from bridge.config import Settings
from bridge.events import ValidationHandshake, parse_event
from bridge.middleware import answer_for
from tests.support.events import INVALID, VALID

ROOT = Path(__file__).parents[2]
RAW = resources.files("bridge").joinpath("openapi.json").read_bytes()
DOC: dict[str, Any] = orjson.loads(RAW)
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]

TOKEN = "unit-test-token-0123456789abcdef"
KAFKA = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
AUTH = {
    "token": {**KAFKA, "BRIDGE_AUTH": "token", "BRIDGE_AUTH_TOKENS": TOKEN},
    "none": {**KAFKA, "BRIDGE_AUTH": "none"},
}
#: What the document describes without saying so: every setting at its default.
DEFAULTS = Settings.from_env({**KAFKA, "BRIDGE_AUTH": "none"})
#: The settings whose default the document quotes ("`NAME` bytes (65536 by default)"), and that default.
QUOTED_DEFAULTS: dict[str, float] = {
    "BRIDGE_MAX_BODY_BYTES": DEFAULTS.http.max_body_bytes,
    "BRIDGE_MAX_BATCH_BYTES": DEFAULTS.http.max_batch_bytes,
    "BRIDGE_MAX_BATCH_EVENTS": DEFAULTS.http.max_batch_events,
    "BRIDGE_READ_TIMEOUT_S": DEFAULTS.http.read_timeout_s,
    "BRIDGE_KEEPALIVE_TIMEOUT_S": DEFAULTS.http.keepalive_timeout_s,
    "BRIDGE_MAX_IN_FLIGHT": DEFAULTS.http.max_in_flight,
    "BRIDGE_PUBLISH_TIMEOUT_S": DEFAULTS.kafka.publish_timeout_s,
    "BRIDGE_READY_CHECK_INTERVAL_S": DEFAULTS.health.ready_check_interval_s,
}
QUOTE = re.compile(r"`([A-Z][A-Z0-9_]*)`(?: [a-z]+)? \(([0-9.]+) by default")
#: How the document marks what exists only with token auth.
TOKEN_ONLY = "Only with `BRIDGE_AUTH=token` (the default)"

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: The operations that take events: every BridgeError is raised on them.
EVENT_OPERATIONS = (("post", http_contract.EVENTS_PATH), ("post", http_contract.EVENTS_TOKEN_ROUTE))


# --- helpers -----------------------------------------------------------------------


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def validator(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A validator for ``schema`` within the document (ECMA-262 regex semantics)."""
    return jsonschema_rs.validator_for({"components": DOC["components"], **schema})


def schema_validator(name: str) -> jsonschema_rs.Validator:
    return validator({"$ref": f"#/components/schemas/{name}"})


def walk(node: object, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) pair in the document, depth first."""
    yield key, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v, key)


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in DOC["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def routes(
    env: dict[str, str], app: web.Application | None = None
) -> dict[tuple[str, str], web.AbstractRoute]:
    """The app's routes but HEAD (aiohttp adds one to every GET) and the catch-all (404/405 answers)."""
    app = app if app is not None else create_app(Settings.from_env(env))
    return {
        (route.method, route.resource.canonical): route
        for route in app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "*")
    }


def error_classes() -> list[type[errors.BridgeError]]:
    found, todo = [], [errors.BridgeError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


async def answer_to(exc: Exception) -> web.Response:
    """What the bridge answers when a handler raises ``exc``."""
    request = make_mocked_request("POST", http_contract.EVENTS_PATH)
    try:
        raise exc  # noqa: TRY301 - answer_for is called from an except block, as the handlers do
    except Exception as raised:  # noqa: BLE001 - answer_for reads the exception being handled
        response = answer_for(raised, request, {})
    assert isinstance(response, web.Response)
    return response


async def problem_answers() -> list[web.Response]:
    """One answer for each problem the code can produce: every error class, aiohttp's own, a bug."""
    raised: list[Exception] = [cls("detail") for cls in error_classes()]
    raised += [web.HTTPNotFound(), web.HTTPMethodNotAllowed("PUT", ["GET"]), RuntimeError("a bug")]
    return [await answer_to(exc) for exc in raised]


def problem_schemas() -> dict[int, dict[str, Any]]:
    """``Problem<status>``'s own members, by status."""
    found = {}
    for name, schema in SCHEMAS.items():
        if re.fullmatch(r"Problem[0-9]{3}", name):
            (own,) = (part for part in schema["allOf"] if "$ref" not in part)
            found[int(name.removeprefix("Problem"))] = own["properties"]
    return found


# --- the file ----------------------------------------------------------------------


def test_document_is_valid_openapi_3_1():
    assert DOC["openapi"].startswith("3.1.")
    validate(DOC, cls=OpenAPIV31SpecValidator)


def test_document_is_indented_json_without_duplicate_keys():
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate keys: {keys}"
        return dict(pairs)

    json.loads(RAW, object_pairs_hook=no_duplicates)
    assert orjson.dumps(DOC, option=orjson.OPT_INDENT_2) + b"\n" == RAW, "not 2-space indented JSON"


def test_document_is_package_data():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "openapi.json" in package_data["bridge"]


async def test_app_serves_the_document_as_it_is():
    app = create_app(Settings.from_env(AUTH["token"]))
    (route,) = (r for key, r in routes({}, app).items() if key == ("GET", http_contract.OPENAPI_PATH))
    response = await route.handler(make_mocked_request("GET", http_contract.OPENAPI_PATH, app=app))
    assert isinstance(response, web.Response)
    assert response.body == RAW
    assert response.content_type == http_contract.JSON_MEDIA_TYPE


def test_version_is_the_package_version():
    assert DOC["info"]["version"] == bridge.__version__


# --- routes ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", AUTH)
def test_every_route_of_the_app_is_described(mode):
    app_routes = set(routes(AUTH[mode]))
    described = set(operations())
    assert app_routes <= described
    token_only = {key for key, op in operations().items() if op["description"].startswith(TOKEN_ONLY)}
    assert described - app_routes == (token_only if mode == "none" else set())


def test_only_the_token_route_is_token_only():
    token_only = {key for key, op in operations().items() if op["description"].startswith(TOKEN_ONLY)}
    assert token_only == {("POST", http_contract.EVENTS_TOKEN_ROUTE)}
    assert resolve(DOC["components"]["parameters"]["Token"])["description"].startswith(TOKEN_ONLY)
    assert DOC["components"]["securitySchemes"]["bearer"]["description"].startswith(TOKEN_ONLY)


def test_token_pattern_is_the_token_rules():
    (parameter,) = (
        resolve(p)
        for p in DOC["paths"][http_contract.EVENTS_TOKEN_ROUTE]["post"]["parameters"]
        if resolve(p)["in"] == "path"
    )
    pattern = validator(parameter["schema"])
    for char in TOKEN_ALPHABET:
        assert pattern.is_valid(char * MIN_TOKEN_LENGTH), char
    assert not pattern.is_valid("a" * (MIN_TOKEN_LENGTH - 1))
    for char in set(string.printable) - TOKEN_ALPHABET:
        assert not pattern.is_valid("a" * MIN_TOKEN_LENGTH + char), char


# --- errors and problems -------------------------------------------------------------


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
async def test_every_error_is_described_where_it_is_raised(cls):
    problem = problem_schemas()[cls.status]
    assert http_contract.PROBLEM_BASE + cls.slug in problem["type"]["enum"]
    assert cls.title in problem["title"]["enum"]
    answer = await answer_to(cls("detail"))
    for method, path in EVENT_OPERATIONS:
        responses = DOC["paths"][path][method]["responses"]
        assert str(cls.status) in responses, f"{method} {path}"
        response = resolve(responses[str(cls.status)])
        schema = response["content"][http_contract.PROBLEM_MEDIA_TYPE]["schema"]
        validator(schema).validate(orjson.loads(answer.body))
        documented = {name.lower(): resolve(h) for name, h in response.get("headers", {}).items()}
        for name, value in cls.headers:
            assert validator(documented[name.lower()]["schema"]).is_valid(value), name
        if cls.status == 503:
            assert documented["retry-after"]["required"]


async def test_every_problem_the_code_makes_is_described_and_nothing_else():
    answers = await problem_answers()
    bodies = [orjson.loads(answer.body) for answer in answers]
    described = problem_schemas()
    assert {(s, t) for s, own in described.items() for t in own["type"]["enum"]} == {
        (b["status"], b["type"]) for b in bodies
    }
    assert {(s, t) for s, own in described.items() for t in own["title"]["enum"]} == {
        (b["status"], b["title"]) for b in bodies
    }
    for answer, body in zip(answers, bodies, strict=True):
        assert answer.content_type == http_contract.PROBLEM_MEDIA_TYPE
        schema_validator(f"Problem{answer.status}").validate(body)


def test_every_error_response_is_a_problem_document():
    for name, response in DOC["components"]["responses"].items():
        media = set(response["content"])
        if name == "Accepted":
            assert media == {http_contract.JSON_MEDIA_TYPE}
        else:  # BadRequest also has aiohttp's text/plain answer to malformed HTTP
            assert media - {"text/plain"} == {http_contract.PROBLEM_MEDIA_TYPE}, name


def test_retry_hints_are_the_code_s():
    text = DOC["components"]["responses"]["Unavailable"]["description"]
    assert f"{http_contract.RETRY_AFTER_S} for `kafka-unavailable`" in text
    assert f"{http_contract.RETRY_AFTER_OVERLOADED_S} for `overloaded`" in text


# --- media types -----------------------------------------------------------------------


def test_every_media_type_of_the_contract_is_described_and_nothing_else():
    contract = {value for name, value in vars(http_contract).items() if name.endswith("MEDIA_TYPE")} | set(
        http_contract.STRUCTURED_TYPES
    )
    described = {media for key, node in walk(DOC) if key == "content" for media in node}
    # Prometheus' own exposition type, and aiohttp's answer to malformed HTTP (before the app).
    assert described == contract | {CONTENT_TYPE_LATEST, "text/plain"}


def test_request_media_types_are_those_the_views_take():
    content = DOC["components"]["requestBodies"]["Events"]["content"]
    assert set(content) == {
        *http_contract.STRUCTURED_TYPES,
        http_contract.BATCH_MEDIA_TYPE,
        http_contract.BINARY_DATA_MEDIA_TYPE,
    }
    for method, path in EVENT_OPERATIONS:
        parameters = [resolve(p) for p in DOC["paths"][path][method]["parameters"]]
        marker = [p["name"] for p in parameters if "puts the request in HTTP binary" in p["description"]]
        assert marker == [http_contract.BINARY_MARKER]


def test_metrics_media_type_is_prometheus_s():
    content = DOC["paths"][http_contract.METRICS_PATH]["get"]["responses"]["200"]["content"]
    assert set(content) == {CONTENT_TYPE_LATEST}


# --- values the code owns ------------------------------------------------------------


def test_invalid_reasons_are_the_parser_s():
    assert SCHEMAS["InvalidReason"]["enum"] == list(events.INVALID_REASONS)
    reasons = [value for key, value in walk(DOC) if key == "reason" and isinstance(value, dict)]
    assert reasons
    assert all(value == {"$ref": "#/components/schemas/InvalidReason"} for value in reasons)


def test_filter_names_are_the_filters():
    assert SCHEMAS["FilterName"]["enum"] == list(filters.FILTER_NAMES)
    names = [value for key, value in walk(DOC) if key == "filtered_by" and isinstance(value, dict)]
    assert names
    assert all(value == {"$ref": "#/components/schemas/FilterName"} for value in names)


def test_known_types_are_the_parser_s():
    enum = SCHEMAS["KnownType"]["enum"]
    assert all(t.startswith(events.CORRESPONDENCE_PREFIX) for t in enum)
    assert {t.removeprefix(events.CORRESPONDENCE_PREFIX) for t in enum} == events.KNOWN_TYPES
    assert len(enum) == len(events.KNOWN_TYPES)


def test_accepted_outcomes_are_the_views():
    batch = {"$ref": "#/components/schemas/BatchAccepted"}
    outcomes = set()
    for schema in (resolve(s) for s in SCHEMAS["Accepted"]["oneOf"] if s != batch):
        outcome = schema["properties"]["outcome"]
        outcomes |= set(outcome.get("enum", [outcome.get("const")]))
    assert outcomes == views.BATCH_ACCEPTED


def test_failed_batch_item_outcomes_are_the_errors():
    enum = SCHEMAS["BatchItemFailed"]["properties"]["outcome"]["enum"]
    assert set(enum) == {cls.outcome for cls in error_classes() if cls is not errors.BridgeError}


def test_quoted_limits_are_the_defaults():
    quoted = [
        (name, float(value))
        for _, text in walk(DOC)
        if isinstance(text, str)
        for name, value in QUOTE.findall(text)
    ]
    assert {name for name, _ in quoted} == set(QUOTED_DEFAULTS)
    for name, value in quoted:
        assert value == QUOTED_DEFAULTS[name], name
    batch = DOC["components"]["requestBodies"]["Events"]["content"][http_contract.BATCH_MEDIA_TYPE]
    assert batch["schema"]["maxItems"] == DEFAULTS.http.max_batch_events
    assert SCHEMAS["BatchAccepted"]["properties"]["count"]["maximum"] == DEFAULTS.http.max_batch_events


# --- the event schema ------------------------------------------------------------------


def examples() -> list[dict[str, Any]]:
    content = DOC["components"]["requestBodies"]["Events"]["content"]
    found = [e["value"] for media in content.values() for e in media.get("examples", {}).values()]
    return found + [e for schema in SCHEMAS.values() for e in schema.get("examples", [])]


def test_examples_are_valid_events_the_parser_accepts():
    found = examples()
    cloud_event = schema_validator("CloudEvent")
    parsed = []
    for example in found:
        cloud_event.validate(example)
        parsed.append(parse_event(orjson.dumps(example)))
    assert any(isinstance(p, ValidationHandshake) for p in parsed)
    assert any(not isinstance(p, ValidationHandshake) and p.is_known_type for p in parsed)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_every_valid_fixture_matches_the_event_schema(path):
    schema_validator("CloudEvent").validate(orjson.loads(path.read_bytes()))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_no_invalid_fixture_matches_the_event_schema(path):
    try:
        body = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return  # not JSON at all: no schema can match
    assert not schema_validator("CloudEvent").is_valid(body)

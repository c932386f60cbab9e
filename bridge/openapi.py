"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``.

Built from the code's own constants (routes, media types, error classes,
limits from the settings) so it cannot drift from what the handlers do; the
copy checked in at ``docs/openapi.json`` is kept in step by a unit test, and
the fuzz tests (``tests/fuzz``) check every answer of the live app against it.

The request schema of a CloudEvent is what :func:`bridge.events.parse_event`
really accepts, as far as JSON Schema can say it; the few rules it cannot
(``time`` must be a real instant) are in the descriptions.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST

from bridge import __version__
from bridge.auth import MIN_TOKEN_LENGTH, TOKEN_ALPHABET
from bridge.config import AuthMode, Settings
from bridge.errors import (
    BatchIncomplete,
    BatchRejected,
    BridgeError,
    DedupeNotReady,
    Forbidden,
    InvalidBatch,
    InvalidEventRejected,
    KafkaUnavailable,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    ShuttingDown,
    Unauthorized,
    UnsupportedMediaType,
)
from bridge.events import CORRESPONDENCE_PREFIX, KNOWN_TYPES, VALIDATION_TYPE
from bridge.http_contract import PROBLEM_BASE, PROBLEM_MEDIA_TYPE as PROBLEM_CONTENT_TYPE
from bridge.http_contract import RETRY_AFTER_S

EVENTS_PATH: Final = "/api/v1/events"
#: The two structured-mode media types (``bridge.views.STRUCTURED_TYPES``); Altinn sends the first.
ALTINN_MEDIA_TYPE: Final = "application/json"
CLOUDEVENTS_MEDIA_TYPE: Final = "application/cloudevents+json"
#: Binary mode's body when it is not JSON: the event's data, as bytes.
BINARY_DATA_MEDIA_TYPE: Final = "application/octet-stream"
OPENAPI_VERSION: Final = "3.1.0"

#: Error classes the event endpoints raise, by the status they answer with.
EVENT_ERRORS: Final[tuple[type[BridgeError], ...]] = (
    InvalidEventRejected,
    InvalidBatch,
    BatchRejected,
    Unauthorized,
    Forbidden,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    KafkaUnavailable,
    Overloaded,
    DedupeNotReady,
    ShuttingDown,
    BatchIncomplete,
)
#: Statuses aiohttp itself answers (through the problem middleware) on any path.
ROUTING_STATUSES: Final = (HTTPStatus.NOT_FOUND, HTTPStatus.METHOD_NOT_ALLOWED)
#: The middleware's last resort for a bug; never intended, always logged.
INTERNAL_ERROR_SLUG: Final = "internal-error"

#: ``reason`` of an invalid body (dead-letter header ``dlq_reason``), from :mod:`bridge.events`.
INVALID_REASONS: Final = (
    "invalid_json",
    "not_an_object",
    "missing_attribute",
    "invalid_attribute",
    "unsupported_specversion",
)
#: ``filtered_by`` values, one per filter in :mod:`bridge.filters`.
FILTER_NAMES: Final = ("source", "resource", "type", "alternativesubject")

#: The attributes Altinn's Correspondence events carry, and what they are.
CORRESPONDENCE_ATTRIBUTES: Final[dict[str, str]] = {
    "resource": "`urn:altinn:resource:<resource id>`.",
    "resourceinstance": (
        "The correspondence id (`correspondence*` types), the attachment id (`attachment*`) or the "
        "notification order id (`notificationcreated`); the Kafka record key."
    ),
}

#: ``time`` as :func:`bridge.events.parse_time` takes it: RFC 3339, any number of
#: fractional digits, ``T``/``Z`` in any case, numeric offsets. ASCII digits only.
TIME_PATTERN: Final = (
    r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-9]{2})$"
)
#: What ``base64.b64decode(value, validate=True)`` accepts: whole quanta, or the
#: last one padded; up to two surplus ``=`` after a whole quantum are ignored.
BASE64_PATTERN: Final = (
    r"^(?:(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)"
    r"|(?:[A-Za-z0-9+/]{4})+={0,2})?$"
)

_ANY_JSON: Final = ("object", "array", "string", "number", "boolean")

#: A Correspondence event as Altinn publishes it (no personal data in it).
EVENT_EXAMPLE: Final[dict[str, str]] = {
    "specversion": "1.0",
    "id": "1faa107f-3c0a-4fa6-9fce-7cee8838e258",
    "type": CORRESPONDENCE_PREFIX + "correspondencepublished",
    "time": "2026-08-20T08:57:56.1234567Z",
    "resource": "urn:altinn:resource:my-correspondence-resource",
    "resourceinstance": "da4ceacc-ad44-4e54-99b6-b58e3c13c785",
    "subject": "urn:altinn:organization:identifier-no:123456789",
    "alternativesubject": "/organisation/123456789",
    "source": "https://platform.altinn.no/correspondence/api/v1/correspondence",
}
#: The event Altinn sends after a subscription is created.
VALIDATION_EXAMPLE: Final[dict[str, str]] = {
    "specversion": "1.0",
    "id": "694caa35-8b25-4cd7-b800-f6eeb93c56ed",
    "source": "https://platform.altinn.no/events/api/v1/subscriptions/1234",
    "type": VALIDATION_TYPE,
}


def case_insensitive_pattern(text: str) -> str:
    """An anchored ECMA-262 pattern matching ``text`` in any ASCII letter case.

    JSON Schema patterns have no flags; the parser compares ``type.lower()``.
    """
    parts = [f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in text]
    return "^" + "".join(parts) + "$"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> dict[str, str]:
    return _ref("schemas", name)


def _problem_slug(status: HTTPStatus) -> str:
    """The slug the middleware gives one of aiohttp's own HTTP errors (its reason phrase)."""
    return status.phrase.lower().replace(" ", "-")


def _problem_types(status: int) -> list[str]:
    slugs = [cls.slug for cls in EVENT_ERRORS if cls.status == status]
    slugs += [_problem_slug(s) for s in ROUTING_STATUSES if s == status]
    if status == HTTPStatus.INTERNAL_SERVER_ERROR:
        slugs.append(INTERNAL_ERROR_SLUG)
    return [PROBLEM_BASE + slug for slug in slugs]


def _titles(status: int) -> list[str]:
    titles = [cls.title for cls in EVENT_ERRORS if cls.status == status]
    titles += [s.phrase for s in ROUTING_STATUSES if s == status]
    if status == HTTPStatus.INTERNAL_SERVER_ERROR:
        titles.append(BridgeError.title)
    return titles


def document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document for an app built from ``settings``."""
    token_auth = settings.auth.mode is AuthMode.TOKEN
    paths: dict[str, Any] = {
        EVENTS_PATH: {"post": _events_operation(settings, path_token=False)},
    }
    if token_auth:
        paths[EVENTS_PATH + "/{token}"] = {"post": _events_operation(settings, path_token=True)}
    paths.update(_operational_paths())
    components: dict[str, Any] = {
        "schemas": _schemas(settings),
        "responses": _responses(settings),
        "headers": _headers(),
        "parameters": _parameters(),
        "requestBodies": {"Events": _request_body(settings)},
    }
    if token_auth:
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": (
                    "One of `BRIDGE_AUTH_TOKENS`, for senders that can add headers. Altinn cannot: "
                    f"it posts to `{EVENTS_PATH}/{{token}}`."
                ),
            }
        }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "altinn-kafka-bridge",
            "version": __version__,
            "summary": "Receives Altinn 3 Correspondence events by webhook and publishes them to Kafka.",
            "description": _info_description(settings),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "events", "description": "Where Altinn (and other senders) post CloudEvents."},
            {"name": "operations", "description": "Health, readiness, metrics and this document."},
        ],
        "paths": paths,
        "components": components,
    }


def _info_description(settings: Settings) -> str:
    auth = (
        f"Event requests carry a token: in the path (`{EVENTS_PATH}/{{token}}`, the URL to register in "
        "Altinn, which sends no credentials) or as `Authorization: Bearer <token>`."
        if settings.auth.mode is AuthMode.TOKEN
        else "Authentication is off (`BRIDGE_AUTH=none`): anyone who can reach the bridge may post events."
    )
    return (
        "Altinn Events pushes one structured CloudEvent per POST and retries **every** non-2xx (4xx "
        "included) 12 times over about 35 hours. So the bridge answers 2xx for everything it has dealt "
        "with for good (published, duplicate, subscription validation, filtered, dead-lettered) and 503 "
        "with `Retry-After` only when a retry can help. 2xx means the event is in Kafka "
        "(acknowledged with `acks=all`), or was already.\n\n"
        f"{auth}\n\n"
        "Every non-2xx answer of the application is an RFC 9457 problem (`application/problem+json`) "
        f"whose `type` is `{PROBLEM_BASE}<slug>`. On any path: 404 `not-found` for a path with no "
        "route, 405 `method-not-allowed` (with `Allow`) for a method a path does not take (`GET` paths "
        "also answer `HEAD`). Requests that are not valid HTTP/1.1 (a request or header line over "
        "8190 bytes, too many headers, bytes not allowed in a method, path or header) are answered by "
        "aiohttp's parser before the application with 400 `text/plain` and the connection closed. "
        f"A connection that is idle, or does not finish its request line and headers, for "
        f"{settings.http.keepalive_timeout_s:g} s (`BRIDGE_KEEPALIVE_TIMEOUT_S`) is closed."
    )


# --- operations ----------------------------------------------------------------


def _events_operation(settings: Settings, *, path_token: bool) -> dict[str, Any]:
    token_auth = settings.auth.mode is AuthMode.TOKEN
    parameters: list[dict[str, Any]] = []
    if path_token:
        parameters.append(_ref("parameters", "Token"))
    parameters += [_ref("parameters", _binary_parameter_name(n)) for n in _BINARY_HEADERS]
    responses: dict[str, Any] = {"200": _ref("responses", "Accepted"), "400": _ref("responses", "BadRequest")}
    if token_auth:
        responses["401"] = _ref("responses", "Unauthorized")
    responses |= {
        "403": _ref("responses", "Forbidden"),
        **({"404": _ref("responses", "NotFound")} if path_token else {}),  # an empty token: no route
        "408": _ref("responses", "RequestTimeout"),
        "413": _ref("responses", "PayloadTooLarge"),
        "415": _ref("responses", "UnsupportedMediaType"),
        "500": _ref("responses", "InternalError"),
        "503": _ref("responses", "Unavailable"),
    }
    if path_token:
        summary = "Receive CloudEvents, authenticated by the token in the path (the URL for Altinn)"
        operation_id = "receiveEventsWithPathToken"
        description = (
            "The same as `POST /api/v1/events`, with the token as the last path segment: the way "
            "Altinn can authenticate, as it only calls the URL registered in the subscription. "
            "An `Authorization` header is ignored here."
        )
    else:
        summary = "Receive CloudEvents"
        operation_id = "receiveEvents"
        description = (
            "One CloudEvent in structured mode (what Altinn sends: `application/json`), one in HTTP "
            "binary mode (`ce-*` headers), or a batch. Answered 200 once Kafka has every event; see "
            "the responses for each outcome."
        )
    operation: dict[str, Any] = {
        "tags": ["events"],
        "summary": summary,
        "description": description,
        "operationId": operation_id,
        "parameters": parameters,
        "requestBody": _ref("requestBodies", "Events"),
        "responses": responses,
    }
    if token_auth:
        # The path token is the credential of the second route; a header is not looked at.
        operation["security"] = [] if path_token else [{"bearer": []}]
    return operation


def _operational_paths() -> dict[str, Any]:
    def get(operation_id: str, summary: str, description: str, responses: dict[str, Any]) -> dict[str, Any]:
        return {
            "get": {
                "tags": ["operations"],
                "summary": summary,
                "description": description,
                "operationId": operation_id,
                "responses": responses,
            }
        }

    return {
        "/healthz": get(
            "healthz",
            "Liveness",
            "200 while the process answers. Never touches Kafka: a Kafka outage must not restart pods.",
            {"200": _json_response("Alive.", _schema("Health"))},
        ),
        "/readyz": get(
            "readyz",
            "Readiness",
            "200 when the producer is connected, a broker answered a metadata request (checked at most "
            "every `BRIDGE_READY_CHECK_INTERVAL_S`), the dedupe window is loaded and the bridge is not "
            "draining; otherwise 503 naming each failing check. Plain JSON, not a problem.",
            {
                "200": _json_response("Ready.", _schema("Ready")),
                "503": _json_response("Not ready.", _schema("NotReady")),
            },
        ),
        "/metrics": get(
            "metrics",
            "Prometheus metrics",
            "Prometheus text exposition format.",
            {
                "200": {
                    "description": "The metrics.",
                    "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                }
            },
        ),
        "/openapi.json": get(
            "openapi",
            "This document",
            "The OpenAPI 3.1 description of this bridge, for its configuration (limits, authentication).",
            {"200": _json_response("The OpenAPI document.", _schema("OpenApiDocument"))},
        ),
    }


# --- request --------------------------------------------------------------------

#: Attributes that have a ``ce-*`` header parameter of their own (any ``ce-<name>`` is taken).
_BINARY_HEADERS: Final = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "resource",
    "resourceinstance",
    "subject",
    "alternativesubject",
)


def _binary_parameter_name(attribute: str) -> str:
    return "ce-" + attribute


def _request_body(settings: Settings) -> dict[str, Any]:
    from bridge import views  # noqa: PLC0415 - views imports this module

    http = settings.http
    invalid = (
        "A body that is not a valid event is answered 200 `dead_lettered` (policy `deadletter`, the "
        "default) or 400 `invalid-event` (policy `reject`), by `BRIDGE_INVALID_EVENT_POLICY`."
    )
    return {
        "description": (
            "What the media type says; anything else is 415. At most "
            f"{http.max_body_bytes} bytes (`BRIDGE_MAX_BODY_BYTES`), a batch at most "
            f"{http.max_batch_bytes} bytes (`BRIDGE_MAX_BATCH_BYTES`); larger is 413. The body must "
            f"arrive within {http.read_timeout_s:g} s (`BRIDGE_READ_TIMEOUT_S`), else 408. No body is "
            "needed in binary mode (Altinn's events carry no data)."
        ),
        "required": False,
        "content": {
            ALTINN_MEDIA_TYPE: {
                "schema": {
                    **_schema("CloudEvent"),
                    "description": (
                        "One structured-mode CloudEvent: what Altinn sends (`application/json; "
                        f"charset=utf-8`; parameters are ignored). {invalid} With a "
                        f"`{views.BINARY_MARKER}` header the request is in binary mode and this body "
                        "is the event's `data`."
                    ),
                },
                "examples": {
                    "correspondence": {"summary": "A Correspondence event", "value": EVENT_EXAMPLE},
                    "validation": {
                        "summary": "Altinn's subscription validation",
                        "value": VALIDATION_EXAMPLE,
                    },
                },
            },
            CLOUDEVENTS_MEDIA_TYPE: {
                "schema": {
                    **_schema("CloudEvent"),
                    "description": (
                        "One structured-mode CloudEvent; structured even when `ce-*` headers come "
                        f"along. {invalid}"
                    ),
                },
            },
            views.BATCH_MEDIA_TYPE: {
                "schema": {
                    "type": "array",
                    "items": _schema("CloudEvent"),
                    "maxItems": http.max_batch_events,
                    "description": (
                        "A JSON array of structured-mode CloudEvents, for replays and tooling; at most "
                        f"{http.max_batch_events} (`BRIDGE_MAX_BATCH_EVENTS`), else 413. Each element is "
                        "handled like one event; a body that is not an array is 400 `invalid-batch`."
                    ),
                },
            },
            BINARY_DATA_MEDIA_TYPE: {
                "schema": {
                    "type": "string",
                    "contentMediaType": BINARY_DATA_MEDIA_TYPE,
                    "description": (
                        "Binary mode only (any media type but `application/cloudevents*`, with a "
                        f"`{views.BINARY_MARKER}` header): the event's `data`, kept as `data_base64`. "
                        f"Without `{views.BINARY_MARKER}` this is 415."
                    ),
                },
            },
        },
    }


def _parameters() -> dict[str, Any]:
    # Letters and digits as ranges; '-' last so that it stands for itself.
    others = sorted(
        (c for c in TOKEN_ALPHABET if not (c.isascii() and c.isalnum())), key=lambda c: (c == "-", c)
    )
    alphabet = "A-Za-z0-9" + "".join(others)
    parameters: dict[str, Any] = {
        "Token": {
            "name": "token",
            "in": "path",
            "required": True,
            "description": (
                "One of `BRIDGE_AUTH_TOKENS`. Any other value is answered 401; its fingerprint, never "
                "the value, is logged."
            ),
            "schema": {"type": "string", "pattern": f"^[{alphabet}]{{{MIN_TOKEN_LENGTH},}}$"},
        },
    }
    for attribute in _BINARY_HEADERS:
        if attribute == "specversion":
            description = (
                "Its presence puts the request in HTTP binary content mode (unless the media type is "
                "`application/cloudevents*`): the attributes come from the `ce-*` headers, "
                "percent-decoded as UTF-8, and the body is the event's `data`. Validated like the "
                "structured form's attribute."
            )
            schema: dict[str, Any] = {"type": "string", "enum": ["1.0"]}
        else:
            description = (
                f"Binary mode: the `{attribute}` attribute, percent-encoded UTF-8 (any other "
                "`ce-<name>` header becomes attribute `<name>`)."
            )
            schema = {"type": "string"}
        parameters[_binary_parameter_name(attribute)] = {
            "name": _binary_parameter_name(attribute),
            "in": "header",
            "required": False,
            "description": description,
            "schema": schema,
        }
    return parameters


# --- responses ------------------------------------------------------------------


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem_response(description: str, schema_name: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": _schema(schema_name)}},
    }
    if headers:
        response["headers"] = {name: _ref("headers", ref) for name, ref in headers.items()}
    return response


def _responses(settings: Settings) -> dict[str, Any]:
    http = settings.http
    bad_request = _problem_response(
        "`invalid-event`: not a valid event, under policy `reject` (`reason`, `field`, `event_id` say "
        "why). `invalid-batch`: a batch body that is not a JSON array. `batch-rejected`: a batch some "
        "of whose events were rejected under policy `reject` and none can succeed on a retry "
        "(`results`). Malformed HTTP is answered by aiohttp's parser with `text/plain`.",
        "Problem400",
    )
    bad_request["content"]["text/plain"] = {
        "schema": {
            "type": "string",
            "description": "aiohttp's HTTP parser refused the request before the application saw it.",
        },
    }
    return {
        "Accepted": _json_response(
            "Dealt with for good: `published` (Kafka acknowledged), `duplicate` (published before, "
            "within the dedupe window), `validation` (Altinn's subscription validation, never "
            "published), `filtered` (outside this bridge's filters), `dead_lettered` (never a valid "
            "event; the body is in the dead-letter topic), or for a batch `accepted` with one result "
            "per event.",
            _schema("Accepted"),
        ),
        "BadRequest": bad_request,
        "Unauthorized": _problem_response(
            "No token, or not one of `BRIDGE_AUTH_TOKENS`.",
            "Problem401",
            **{"WWW-Authenticate": "WWWAuthenticate"},
        ),
        "Forbidden": _problem_response(
            "The source address is outside `BRIDGE_ALLOWED_NETWORKS` (only when that is set).", "Problem403"
        ),
        "NotFound": _problem_response(
            "No route has this path (on the token route: an empty token, or an unescaped `/` in it).",
            "Problem404",
        ),
        "MethodNotAllowed": _problem_response(
            "The path does not take this method.", "Problem405", Allow="Allow"
        ),
        "RequestTimeout": _problem_response(
            f"The body did not arrive within {http.read_timeout_s:g} s (`BRIDGE_READ_TIMEOUT_S`). "
            "The connection is closed.",
            "Problem408",
        ),
        "PayloadTooLarge": _problem_response(
            f"The body is over {http.max_body_bytes} bytes (`BRIDGE_MAX_BODY_BYTES`), a batch over "
            f"{http.max_batch_bytes} bytes (`BRIDGE_MAX_BATCH_BYTES`) or {http.max_batch_events} events "
            "(`BRIDGE_MAX_BATCH_EVENTS`). Refused from `Content-Length` before reading, or as soon as a "
            "chunked body passes the limit; the connection is closed.",
            "Problem413",
        ),
        "UnsupportedMediaType": _problem_response(
            "Not one of the request body's media types, and no `ce-specversion` header (binary mode).",
            "Problem415",
        ),
        "InternalError": _problem_response(
            "A bug in the bridge (logged with its traceback). Never intended: every other failure "
            "has its own status.",
            "Problem500",
        ),
        "Unavailable": _problem_response(
            f"Retry later, after `Retry-After` seconds (default {RETRY_AFTER_S}). `kafka-unavailable`: "
            f"no acknowledgement within {settings.kafka.publish_timeout_s:g} s "
            "(`BRIDGE_PUBLISH_TIMEOUT_S`), or an identical delivery in flight failed or is still "
            f"waiting. `overloaded`: more than {http.max_in_flight} requests or publishes in flight "
            "(`BRIDGE_MAX_IN_FLIGHT`), or too many batches; answered at once. `not-ready`: the dedupe "
            "window is still loading. `shutting-down`. `batch-incomplete`: some events of a batch can "
            "succeed on a retry; resend the whole batch, what was published comes back `duplicate`.",
            "Problem503",
            **{"Retry-After": "RetryAfter"},
        ),
    }


def _headers() -> dict[str, Any]:
    (authenticate,) = (value for name, value in Unauthorized.headers if name == "WWW-Authenticate")
    return {
        "RetryAfter": {
            "description": "Seconds to wait before retrying.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        },
        "WWWAuthenticate": {
            "description": "The authentication scheme to use.",
            "required": True,
            "schema": {"type": "string", "const": authenticate},
        },
        "Allow": {
            "description": "The methods the path takes.",
            "required": True,
            "schema": {"type": "string"},
        },
    }


# --- schemas --------------------------------------------------------------------


def _schemas(settings: Settings) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    schemas |= _event_schemas()
    schemas |= _outcome_schemas(settings)
    schemas |= _problem_schemas()
    schemas |= {
        "Health": _closed({"status": {"const": "ok"}}),
        "Ready": _closed({"status": {"const": "ready"}}),
        "NotReady": _closed(
            {
                "status": {"const": "not ready"},
                "failing": {
                    "type": "object",
                    "description": (
                        "Each failing check and why: `producer` (not connected yet), `dedupe` (window "
                        "loading from Kafka), `broker` (no metadata answer), `draining` (shutting "
                        "down), `failed` (a background task died; the process is stopping)."
                    ),
                    "additionalProperties": {"type": "string"},
                    "minProperties": 1,
                },
            }
        ),
        "OpenApiDocument": {
            "type": "object",
            "required": ["openapi", "info", "paths"],
            "properties": {"openapi": {"type": "string", "pattern": r"^3\.1\.[0-9]+$"}},
        },
    }
    return schemas


def _closed(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object with exactly ``properties`` (those in ``optional`` may be missing)."""
    return {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
        "additionalProperties": False,
    }


def _nonempty(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "description": description}


def _event_schemas() -> dict[str, Any]:
    common: dict[str, Any] = {
        "specversion": {"const": "1.0", "description": "CloudEvents 1.0."},
        "id": _nonempty("The event id; with `source`, the key duplicates are recognised by."),
        "source": _nonempty(
            "Where the event comes from, e.g. `https://platform.altinn.no/correspondence/api/v1/correspondence`."
        ),
        "type": _nonempty(
            f"`{CORRESPONDENCE_PREFIX}<name>`, matched case-insensitively; {len(KNOWN_TYPES)} names are "
            "known, others go to the unknown-type topic (never rejected)."
        ),
    }
    correspondence = dict(common)
    correspondence |= {name: _nonempty(text) for name, text in CORRESPONDENCE_ATTRIBUTES.items()}
    correspondence |= {
        "time": {
            "type": ["string", "null"],
            "pattern": TIME_PATTERN,
            "description": (
                "RFC 3339 date-time with any number of fractional digits (Altinn sends seven) and any "
                "offset; it must also be a real instant (an existing day, an offset under 24 h). "
                "Optional; `null` is the same as absent."
            ),
        },
        "subject": {
            "type": ["string", "null"],
            "description": (
                "Optional: a URN (`urn:altinn:organization:identifier-no:<9 digits>`, …) or `/party/<n>`."
            ),
        },
        "alternativesubject": {
            "type": ["string", "null"],
            "description": "Optional: `/organisation/<9 digits>` or `/person/<11 digits>`.",
        },
        "data": {"description": "Any JSON; Correspondence events carry none."},
        "data_base64": {
            "type": ["string", "null"],
            "pattern": BASE64_PATTERN,
            "description": "Binary data, base64 (RFC 4648, padded). Not together with `data`.",
        },
    }
    return {
        "CloudEvent": {
            "description": (
                "One structured-mode CloudEvent as the bridge validates it: a JSON object (UTF-8, "
                "numbers within a double's range, nesting within 1024 levels; of duplicate keys the "
                "last counts) that is Altinn's subscription validation event or a Correspondence "
                "event. Extension attributes (e.g. `traceparent`) are kept; the Kafka record value is "
                "the body exactly as received."
            ),
            "anyOf": [_schema("ValidationEvent"), _schema("CorrespondenceEvent")],
        },
        "ValidationEvent": {
            "type": "object",
            "description": (
                f"`{VALIDATION_TYPE}` (any case): Altinn's subscription validation, answered 200 "
                "`validation` and never published. Only the four core attributes are checked."
            ),
            "required": list(common),
            "properties": common
            | {"type": {"type": "string", "pattern": case_insensitive_pattern(VALIDATION_TYPE)}},
            "examples": [VALIDATION_EXAMPLE],
        },
        "CorrespondenceEvent": {
            "type": "object",
            "description": "Any other type: the Correspondence attributes are required too.",
            "required": [*common, *CORRESPONDENCE_ATTRIBUTES],
            "properties": correspondence,
            "not": {
                "description": "`data` and a non-null `data_base64` together",
                "required": ["data", "data_base64"],
                "properties": {"data_base64": {"type": list(_ANY_JSON)}},
            },
            "examples": [EVENT_EXAMPLE],
        },
    }


def _outcome_schemas(settings: Settings) -> dict[str, Any]:
    delivery = {
        "topic": {"type": "string", "description": "The Kafka topic of the record."},
        "partition": {"type": "integer", "minimum": 0},
        "offset": {"type": "integer", "minimum": 0},
    }
    event_id = {"type": "string", "description": "The event's `id`."}
    outcomes: dict[str, dict[str, Any]] = {
        "Published": _closed(
            {"outcome": {"enum": ["published", "duplicate"]}, "event_id": event_id, **delivery}
        ),
        "Validation": _closed({"outcome": {"const": "validation"}, "event_id": event_id}),
        "Filtered": _closed(
            {
                "outcome": {"const": "filtered"},
                "event_id": event_id,
                "filtered_by": {"enum": list(FILTER_NAMES)},
            }
        ),
        "DeadLettered": _closed(
            {
                "outcome": {"const": "dead_lettered"},
                "event_id": {
                    "type": "string",
                    "description": "The `id` the body carried, if usable (shortened, ID numbers masked).",
                },
                "reason": {"enum": list(INVALID_REASONS)},
                "detail": {"type": "string"},
                "field": {"type": "string", "description": "The attribute at fault, when one is."},
                **delivery,
            },
            optional=("event_id", "field"),
        ),
    }
    schemas = {f"{name}Outcome": schema for name, schema in outcomes.items()}
    single = [_schema(f"{name}Outcome") for name in outcomes]
    schemas["BatchAccepted"] = _closed(
        {
            "outcome": {"const": "accepted"},
            "count": {"type": "integer", "minimum": 0, "maximum": settings.http.max_batch_events},
            "outcomes": _schema("OutcomeCounts"),
            "results": {"type": "array", "items": _schema("BatchItemDone")},
        }
    )
    schemas["Accepted"] = {"oneOf": [*single, _schema("BatchAccepted")]}
    schemas["OutcomeCounts"] = {
        "type": "object",
        "description": "How many events of the batch had each outcome.",
        "additionalProperties": {"type": "integer", "minimum": 1},
    }
    index = {"type": "integer", "minimum": 0, "description": "Position in the batch."}
    schemas["BatchItemDone"] = {
        "oneOf": [
            {
                **schema,
                "required": ["index", *schema["required"]],
                "properties": {"index": index, **schema["properties"]},
            }
            for schema in outcomes.values()
        ]
    }
    schemas["BatchItemFailed"] = _closed(
        {
            "index": index,
            "outcome": {"enum": sorted({cls.outcome for cls in EVENT_ERRORS})},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "retryable": {"type": "boolean", "description": "Whether resending the batch can help."},
            "reason": {"enum": list(INVALID_REASONS)},
            "field": {"type": "string"},
            "event_id": {"type": "string"},
        },
        optional=("reason", "field", "event_id"),
    )
    schemas["BatchItem"] = {"oneOf": [_schema("BatchItemDone"), _schema("BatchItemFailed")]}
    return schemas


def _problem_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "format": "uri", "description": f"`{PROBLEM_BASE}<slug>`."},
                "title": {"type": "string", "minLength": 1},
                "status": {"type": "integer"},
                "detail": {"type": "string", "minLength": 1, "description": "What happened, for humans."},
            },
        },
    }
    extensions: dict[int, dict[str, Any]] = {
        400: {
            "reason": {"enum": list(INVALID_REASONS)},
            "field": {"type": "string"},
            "event_id": {"type": "string"},
            "count": {"type": "integer", "minimum": 0},
            "outcomes": _schema("OutcomeCounts"),
            "results": {"type": "array", "items": _schema("BatchItem")},
        },
        503: {
            "event_id": {"type": "string", "description": "The event's `id`, when one event was refused."},
            "count": {"type": "integer", "minimum": 0},
            "outcomes": _schema("OutcomeCounts"),
            "results": {"type": "array", "items": _schema("BatchItem")},
        },
    }
    for status in (400, 401, 403, 404, 405, 408, 413, 415, 500, 503):
        schemas[f"Problem{status}"] = {
            "allOf": [
                _schema("Problem"),
                {
                    "properties": {
                        "type": {"enum": _problem_types(status)},
                        "title": {"enum": _titles(status)},
                        "status": {"const": status},
                        **extensions.get(status, {}),
                    }
                },
            ]
        }
    return schemas

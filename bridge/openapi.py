"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``.

Built from the code's own constants so it cannot drift from the routes; the
copy checked in at ``docs/openapi.json`` is kept in step by a test.
"""

from __future__ import annotations

from typing import Any

from bridge import __version__
from bridge.config import AuthMode, Settings

EVENTS_PATH = "/api/v1/events"


def document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document for an app built from ``settings``."""
    event_answers = {
        "200": {"description": "Accepted: published, duplicate, validation, filtered or dead-lettered."},
        "4XX": {"description": "Refused; problem+json names the cause."},
        "503": {"description": "Retry later (Kafka unavailable, overloaded, starting or stopping)."},
    }
    paths: dict[str, Any] = {
        EVENTS_PATH: {"post": {"summary": "Receive CloudEvents", "responses": event_answers}},
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Alive"}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness",
                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Metrics"}}}
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}
        },
    }
    if settings.auth.mode is AuthMode.TOKEN:
        paths[EVENTS_PATH + "/{token}"] = {
            "post": {
                "summary": "Receive CloudEvents, authenticated by the token in the path (Altinn)",
                "parameters": [
                    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": event_answers,
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "altinn-kafka-bridge", "version": __version__},
        "paths": paths,
    }

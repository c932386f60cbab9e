"""Shared plumbing of the fuzz tests: settings, a live app, the OpenAPI contract, case counts.

Every answer the fuzz tests get is checked twice: against what docs/http-api.md
promises (status < 500 unless Kafka is deliberately down; every non-2xx is an
RFC 9457 problem) and against the OpenAPI document the app serves.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import orjson
from aiohttp import web
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry

from bridge.app import create_app
from bridge.config import Settings
from bridge.state import BRIDGE
from bridge.views import OPENAPI_DOCUMENT
from tests.fuzz import known_bugs
from tests.support.fakes import FakePublisher
from tests.support.http import EVENTS_PATH
from tests.support.settings import make_settings

#: The token the fuzzed apps accept (BRIDGE_AUTH=token).
TOKEN = "fuzz-test-token-0123456789-abcdefXYZ"
TOKEN_PATH = EVENTS_PATH + "/{token}"


def fuzz_settings(**env: str) -> Settings:
    """Token auth with :data:`TOKEN`, dedupe in memory, else the production defaults (or ``env``)."""
    return make_settings(
        **{"BRIDGE_AUTH": "token", "BRIDGE_AUTH_TOKENS": TOKEN, "BRIDGE_DEDUPE": "memory", **env}
    )


def hypothesis_settings(max_examples: int) -> settings:
    """Reproducible in CI: derandomized, no example database, no deadline on a shared machine."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- case counts -------------------------------------------------------------------


@dataclass
class FuzzStats:
    """What one fuzz test did: cases sent, failures, status codes, known-bug 500s."""

    name: str
    cases: int = 0
    failures: int = 0
    known_bug_hits: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    #: Cases per API operation, for the tests that spread over several.
    operations: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def case(self, status: int | None = None) -> None:
        self.cases += 1
        if status is not None:
            self.statuses[status] += 1

    def merge(self, other: FuzzStats) -> None:
        """Add ``other``'s counts (another parameter of the same test) to these."""
        self.cases += other.cases
        self.failures += other.failures
        self.known_bug_hits.update(other.known_bug_hits)
        self.statuses.update(other.statuses)
        self.operations.update(other.operations)
        self.seconds += other.seconds

    def line(self) -> str:
        parts = [f"fuzz: {self.name} cases={self.cases} failures={self.failures}"]
        if self.known_bug_hits:
            hits = ",".join(f"{k}:{v}" for k, v in sorted(self.known_bug_hits.items()))
            parts.append(f"known_bug_500s={sum(self.known_bug_hits.values())} ({hits})")
        if self.statuses:
            parts.append("statuses=" + ",".join(f"{s}:{n}" for s, n in sorted(self.statuses.items())))
        if self.operations:
            parts.append("operations=" + ",".join(f"{o}:{n}" for o, n in sorted(self.operations.items())))
        parts.append(f"time={self.seconds:.1f}s")
        return " ".join(parts)


#: Every test's stats (parameters added up), in the order the tests ran; printed by conftest at the end.
RESULTS: dict[str, FuzzStats] = {}


# --- the live app, on a real socket, in a thread of its own -------------------------


@dataclass
class LiveApp:
    """The real app listening on 127.0.0.1, driven by its own event loop in a thread."""

    base_url: str
    port: int
    app: web.Application
    loop: asyncio.AbstractEventLoop


@contextmanager
def live_app(settings: Settings, publisher: FakePublisher) -> Iterator[LiveApp]:
    """Serve ``create_app(settings, publisher=...)`` like ``bridge.server`` does, until the block ends."""
    started = threading.Event()
    state: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = create_app(settings, publisher=publisher, registry=CollectorRegistry())
        runner = web.AppRunner(  # as bridge.server.serve builds it
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            keepalive_timeout=settings.http.keepalive_timeout_s,
        )
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        state.update(app=app, loop=loop, port=runner.addresses[0][1])
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=serve, name="fuzz-live-app", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the live app did not start within 10 s")
    app, loop = state["app"], state["loop"]
    deadline = time.monotonic() + 5
    while not app[BRIDGE].lifecycle.producer_started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield LiveApp(f"http://127.0.0.1:{state['port']}", state["port"], app, loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)


# --- the contract --------------------------------------------------------------------


class Contract:
    """The OpenAPI document the app serves: checks a real answer against what it says."""

    def __init__(self) -> None:
        self.doc = orjson.loads(OPENAPI_DOCUMENT)
        self._validators: dict[str, jsonschema_rs.Validator] = {}

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def _validator(self, schema: dict[str, Any]) -> jsonschema_rs.Validator:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
        if key not in self._validators:
            self._validators[key] = jsonschema_rs.validator_for(
                {"components": self.doc["components"], **schema}
            )
        return self._validators[key]

    def check(self, method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> None:
        """Status, media type, body and headers of an answer to ``method path`` (path as a template)."""
        headers = {name.lower(): value for name, value in headers.items()}
        operation = self.doc["paths"][path][method.lower()]
        responses = operation["responses"]
        assert str(status) in responses, f"{method} {path}: {status} is not documented ({sorted(responses)})"
        response = self._resolve(responses[str(status)])
        content_type = headers.get("content-type", "")
        media = content_type.split(";")[0].strip()
        content = response.get("content", {})
        documented = {m.split(";")[0].strip(): m for m in content}
        assert media in documented, f"{method} {path} {status}: {content_type!r} not in {sorted(content)}"
        schema = content[documented[media]].get("schema")
        if schema is not None and media.endswith("json"):
            instance = orjson.loads(body)
            errors = [e.message for e in self._validator(schema).iter_errors(instance)]
            assert not errors, (
                f"{method} {path} {status}: body {body[:500]!r} breaks the schema: {errors[:3]}"
            )
        for name, ref in response.get("headers", {}).items():
            header = self._resolve(ref)
            if name.lower() not in headers:
                assert not header.get("required"), f"{method} {path} {status}: header {name} missing"
                continue
            value: Any = headers[name.lower()]
            if header["schema"].get("type") == "integer":
                assert value.isdigit(), f"{name}: {value!r}"
                value = int(value)
            assert self._validator(header["schema"]).is_valid(value), f"{name}: {value!r}"


def answer_is_acceptable(
    stats: FuzzStats,
    status: int,
    sent_headers: list[tuple[str, bytes]],
    sent_body: bytes,
    *,
    kafka_down: bool = False,
) -> bool:
    """Whether a 5xx is allowed: 503 with Kafka down, or a 500 an open known bug explains (counted).

    Returns True when the answer should be checked further (it is not a known bug's 500).
    """
    if status < 500:
        return True
    if status == 503 and kafka_down:
        return True
    bug = known_bugs.explain_500(sent_headers, sent_body) if status == 500 else None
    assert bug is not None, f"{status} for headers={sent_headers!r} body={sent_body[:500]!r}"
    stats.known_bug_hits[bug.key] += 1
    return False

"""schemathesis against the live app, from the OpenAPI document it serves.

The real app (``create_app`` with a fake publisher, token auth, dedupe in
memory) listens on 127.0.0.1; schemathesis loads ``/openapi.json`` from it and
runs its examples, coverage and fuzzing phases (valid and invalid inputs) on
every operation, checking each answer: no server error, status code, media
type, headers and body as documented. On top, every non-2xx answer of the
application must be an RFC 9457 problem (the documented exceptions: /readyz's
503 is plain JSON, and malformed HTTP gets aiohttp's own 400 text/plain).
Three in four event requests carry the right token (in the path or as Bearer),
so that they reach the parser; the rest keep the credentials schemathesis
generated (mostly answered 401).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.schemas import OpenApiSchema

from bridge.views import OPENAPI_DOCUMENT
from tests.fuzz.known_bugs import explain_500
from tests.fuzz.support import (
    TOKEN,
    TOKEN_PATH,
    FuzzStats,
    LiveApp,
    fuzz_settings,
    live_app,
)
from tests.support.fakes import FakePublisher
from tests.support.http import EVENTS_PATH, assert_problem

pytestmark = pytest.mark.fuzz

#: Generated cases per event operation in the fuzzing phase (the coverage and
#: examples phases add their own); the GET operations take no input, so
#: hypothesis stops after the few distinct cases there are.
MAX_EXAMPLES = 1000

#: Fixed, so that CI runs the same cases every time (with hypothesis's derandomize).
SEED = 20261129

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def live() -> Iterator[LiveApp]:
    with live_app(fuzz_settings(), FakePublisher()) as app:
        yield app


@pytest.fixture
def api_schema(live: LiveApp, request: pytest.FixtureRequest) -> OpenApiSchema:
    # schemathesis 4.32's lazy loader renames the node through ``Node._nodeid``,
    # which pytest 9 no longer has; give it one (it only affects report names).
    request.node._nodeid = request.node.nodeid
    return schemathesis.openapi.from_url(
        live.base_url + "/openapi.json", config=schemathesis.Config.from_dict({"seed": SEED})
    )


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


# Every operation: schemathesis leaves out the one that served the schema (GET /openapi.json)
# unless a filter selects it.
schema = schemathesis.pytest.from_fixture("api_schema").include(path_regex="^/")


def _wire(request: requests.PreparedRequest) -> tuple[list[tuple[str, bytes]], bytes]:
    """The headers and body as http.client puts them on the wire."""
    headers = [(k, v.encode("latin-1") if isinstance(v, str) else v) for k, v in request.headers.items()]
    body = request.body or b""
    return headers, body.encode("utf-8") if isinstance(body, str) else body


@pytest.mark.timeout(400)  # one item runs every operation; ~40 s on a 2-core machine
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis(case: schemathesis.Case, fuzz_stats: FuzzStats, session: requests.Session) -> None:
    authenticate = fuzz_stats.cases % 4 != 3
    if case.operation.path == TOKEN_PATH and authenticate:
        case.path_parameters = {**(case.path_parameters or {}), "token": TOKEN}
    elif case.operation.path == EVENTS_PATH and authenticate:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
    response = case.call(session=session)
    fuzz_stats.case(response.status_code)
    fuzz_stats.operations[case.operation.label] += 1
    if response.status_code == 500:
        bug = explain_500(*_wire(response.request))
        if bug is not None:
            fuzz_stats.known_bug_hits[bug.key] += 1
            return
    try:
        case.validate_response(response, checks=CHECKS)
        if response.status_code >= 400 and case.operation.path != "/readyz":
            content_type = (response.headers.get("content-type") or [""])[0]
            if response.status_code == 400 and content_type.startswith("text/plain"):
                return  # aiohttp's parser refused malformed HTTP, as documented
            assert_problem(response.status_code, content_type, response.content)
    except Exception:
        fuzz_stats.failures += 1
        raise


def test_the_app_serves_the_packaged_document(live: LiveApp, session: requests.Session) -> None:
    """What schemathesis loaded is ``bridge/openapi.json``, byte for byte."""
    response = session.get(live.base_url + "/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.content == OPENAPI_DOCUMENT

"""/healthz, /readyz (caching, draining, producer start) and /metrics (names, bounded labels)."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge import __version__
from tests.support.events import TYPE_LABELS, VALID_EVENTS, valid_fixture, with_attributes
from tests.support.http import (
    EVENTS_PATH,
    json_answer,
    post_event,
    problem_answer,
    retry_after_s,
    set_draining,
)
from tests.support.logs import national_ids_in_fixtures
from tests.support.metrics import event_counts, sample, series
from tests.support.waiting import until

PUBLISHED_FIXTURE = valid_fixture("06-correspondencepublished")
#: docs/operations.md, "Metrics": every metric a dashboard may rely on, with its exposition type.
BRIDGE_METRICS = {
    "altinn_bridge_events_total": "counter",
    "altinn_bridge_publish_duration_seconds": "histogram",
    "altinn_bridge_request_duration_seconds": "histogram",
    "altinn_bridge_requests_in_flight": "gauge",
    "altinn_bridge_event_age_seconds": "histogram",
    "altinn_bridge_kafka_producer_errors_total": "counter",
    "altinn_bridge_ready": "gauge",
    "altinn_bridge_build_info": "gauge",
    "altinn_bridge_redeliveries_total": "counter",
    "altinn_bridge_dedupe_entries": "gauge",
    "altinn_bridge_dedupe_evictions_total": "counter",
    "altinn_bridge_dedupe_state_errors_total": "counter",
    "altinn_bridge_auth_failures_total": "counter",
}


async def _ready(client, status: int) -> dict[str, object]:
    return await json_answer(await client.get("/readyz"), status)


# --- liveness ------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["normal", "broker-unreachable", "draining"])
async def test_healthz_is_200_whatever_kafka_does(make_client, fake_publisher, state: str):
    fake_publisher.reachable = state != "broker-unreachable"
    client = await make_client()
    if state == "draining":
        set_draining(client)
    checks_before = fake_publisher.checks

    assert await json_answer(await client.get("/healthz")) == {"status": "ok"}
    assert fake_publisher.checks == checks_before


async def test_healthz_answers_before_the_producer_started(make_client, fake_publisher):
    fake_publisher.start_gate = asyncio.Event()
    client = await make_client(wait_for_producer=False)

    assert await json_answer(await client.get("/healthz")) == {"status": "ok"}
    assert not fake_publisher.started


# --- readiness -----------------------------------------------------------------------


async def test_ready_when_producer_started_and_broker_reachable(make_client, fake_publisher, registry):
    client = await make_client()

    assert await _ready(client, 200) == {"status": "ready"}
    assert fake_publisher.checks == 1
    assert sample(registry, "altinn_bridge_ready") == 1


async def test_not_ready_when_broker_unreachable(make_client, fake_publisher, registry):
    fake_publisher.reachable = False
    client = await make_client()

    answer = await _ready(client, 503)

    assert answer["status"] == "not ready"
    assert list(answer["failing"]) == ["broker"]
    assert answer["failing"]["broker"]
    assert sample(registry, "altinn_bridge_ready") == 0


async def test_not_ready_when_broker_check_times_out(make_client, fake_publisher):
    fake_publisher.check_delay_s = 5.0
    client = await make_client(BRIDGE_READY_CHECK_TIMEOUT_S="0.1")

    async with asyncio.timeout(2):
        answer = await _ready(client, 503)

    assert list(answer["failing"]) == ["broker"]


async def test_not_ready_until_the_producer_started(make_client, fake_publisher, registry):
    fake_publisher.start_gate = asyncio.Event()
    client = await make_client(wait_for_producer=False)

    answer = await _ready(client, 503)
    assert list(answer["failing"]) == ["producer"]
    assert fake_publisher.checks == 0  # no broker check before there is a producer
    assert sample(registry, "altinn_bridge_ready") == 0

    fake_publisher.start_gate.set()
    await until(lambda: fake_publisher.started, timeout_s=2.0)
    assert await _ready(client, 200) == {"status": "ready"}
    assert sample(registry, "altinn_bridge_ready") == 1


async def test_concurrent_readyz_share_one_broker_check(make_client, fake_publisher):
    fake_publisher.check_delay_s = 0.2
    client = await make_client()

    responses = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))

    assert [r.status for r in responses] == [200] * 20
    assert fake_publisher.checks == 1
    assert fake_publisher.max_checking == 1


async def test_broker_result_is_reused_within_the_interval(make_client, fake_publisher):
    client = await make_client(BRIDGE_READY_CHECK_INTERVAL_S="300")
    await _ready(client, 200)

    fake_publisher.reachable = False
    for _ in range(5):
        await _ready(client, 200)

    assert fake_publisher.checks == 1


async def test_broker_is_checked_again_once_the_interval_passed(make_client, fake_publisher):
    client = await make_client(BRIDGE_READY_CHECK_INTERVAL_S="0.2")
    await _ready(client, 200)
    fake_publisher.reachable = False
    await _ready(client, 200)  # still the cached result

    await asyncio.sleep(0.25)
    answer = await _ready(client, 503)

    assert list(answer["failing"]) == ["broker"]
    assert fake_publisher.checks == 2
    fake_publisher.reachable = True
    await asyncio.sleep(0.25)
    await _ready(client, 200)


async def test_interval_zero_checks_every_time(make_client, fake_publisher):
    client = await make_client(BRIDGE_READY_CHECK_INTERVAL_S="0")

    for _ in range(3):
        await _ready(client, 200)
    fake_publisher.reachable = False
    await _ready(client, 503)

    assert fake_publisher.checks == 4


async def test_draining_fails_readiness_and_refuses_events(make_client, fake_publisher, registry):
    client = await make_client()
    await _ready(client, 200)

    set_draining(client)
    answer = await _ready(client, 503)
    response = await post_event(client, PUBLISHED_FIXTURE)

    assert "draining" in answer["failing"]
    await problem_answer(response, 503, "shutting-down")
    assert retry_after_s(response) > 0
    assert fake_publisher.records == []
    assert event_counts(registry) == {("unavailable", "other"): 1}
    assert sample(registry, "altinn_bridge_ready") == 0


# --- /metrics ------------------------------------------------------------------------


async def _scrape(client) -> str:
    response = await client.get("/metrics")
    text = await response.text()
    assert response.status == 200, text
    assert response.content_type == "text/plain"
    return text


def _samples(text: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """Exposition text parsed: sample name -> {label set -> value}."""
    found: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return found


async def test_metrics_exposes_the_bridge_metrics_in_text_format(make_client):
    client = await make_client()

    text = await _scrape(client)

    declared = dict(line.split(" ")[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    assert {name: declared.get(name) for name in BRIDGE_METRICS} == BRIDGE_METRICS
    (build,) = _samples(text)["altinn_bridge_build_info"]
    assert dict(build)["version"] == __version__


async def test_metrics_show_what_happened(make_client):
    client = await make_client()
    await json_answer(await post_event(client, PUBLISHED_FIXTURE))
    await client.get("/nowhere")

    samples = _samples(await _scrape(client))

    published = frozenset({"outcome": "published", "type": "correspondencepublished"}.items())
    assert samples["altinn_bridge_events_total"][published] == 1
    requests = {
        (labels["route"], labels["method"], labels["status"]): value
        for labels, value in (
            (dict(k), v) for k, v in samples["altinn_bridge_request_duration_seconds_count"].items()
        )
    }
    assert requests[EVENTS_PATH, "POST", "200"] == 1
    assert requests["unmatched", "GET", "404"] == 1


async def test_requests_in_flight_gauge(make_client, fake_publisher, registry):
    fake_publisher.delay_s = 0.3
    client = await make_client()

    posting = asyncio.create_task(post_event(client, PUBLISHED_FIXTURE))
    await until(lambda: fake_publisher.publishing == 1, timeout_s=2.0)
    during = sample(registry, "altinn_bridge_requests_in_flight")
    await json_answer(await posting)

    assert during == 1
    assert sample(registry, "altinn_bridge_requests_in_flight") == 0


async def test_event_age_observed_from_the_event_time(make_client, registry):
    client = await make_client()
    sent = (datetime.now(UTC) - timedelta(seconds=60)).isoformat().replace("+00:00", "Z")

    await json_answer(await post_event(client, with_attributes(PUBLISHED_FIXTURE, time=sent)))
    await json_answer(await post_event(client, with_attributes(PUBLISHED_FIXTURE, time=None)))

    assert sample(registry, "altinn_bridge_event_age_seconds_count") == 1
    assert 60 <= sample(registry, "altinn_bridge_event_age_seconds_sum") < 70


# --- label cardinality stays bounded --------------------------------------------------


def _label_values(registry, sample_name: str, label: str) -> set[str]:
    return {dict(labels)[label] for labels in series(registry, sample_name)}


async def test_random_types_paths_and_content_types_do_not_grow_labels(make_client, fake_publisher, registry):
    client = await make_client()
    for _ in range(50):
        random = uuid.uuid4().hex
        body = with_attributes(PUBLISHED_FIXTURE, id=random, type=f"no.altinn.correspondence.{random}")
        await json_answer(await post_event(client, body))
        await post_event(client, with_attributes(PUBLISHED_FIXTURE, id=f"{random}-2", type=random))
        await problem_answer(await client.get(f"/{random}"), 404, "not-found")
        await problem_answer(await client.post(f"{EVENTS_PATH}/{random}"), 404, "not-found")
        await problem_answer(
            await post_event(client, PUBLISHED_FIXTURE, f"application/{random}"),
            415,
            "unsupported-media-type",
        )

    assert len(fake_publisher.records) == 100
    assert event_counts(registry) == {("published", "other"): 100, ("rejected", "other"): 50}
    assert _label_values(registry, "altinn_bridge_events_total", "type") <= TYPE_LABELS
    request_count = "altinn_bridge_request_duration_seconds_count"
    assert _label_values(registry, request_count, "route") == {EVENTS_PATH, "unmatched"}
    assert len(series(registry, request_count)) <= 4


async def test_random_methods_do_not_grow_labels(make_client, registry):
    client = await make_client()
    for _ in range(50):
        method = "X" + uuid.uuid4().hex[:8].upper()
        response = await client.request(method, EVENTS_PATH)
        # aiohttp's C parser refuses unknown methods (400) before the app sees them;
        # its pure-Python parser (AIOHTTP_NO_EXTENSIONS=1) lets them through (405).
        assert response.status in (400, 405)

    methods = _label_values(registry, "altinn_bridge_request_duration_seconds_count", "method")
    assert len(methods) <= 10, f"{len(methods)} method label values"


async def test_no_subject_resourceinstance_id_or_national_id_in_metrics(make_client):
    client = await make_client(BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS="metrics-test-token-" + "m" * 10)
    token = "metrics-test-token-" + "m" * 10
    sent: set[str] = set()
    for path in VALID_EVENTS:
        event = orjson.loads(path.read_bytes())
        sent.update(
            str(event[name]) for name in ("id", "resourceinstance", "subject", "source") if name in event
        )
        if "alternativesubject" in event:
            sent.add(str(event["alternativesubject"]))
        response = await client.post(
            f"{EVENTS_PATH}/{token}", data=path.read_bytes(), headers={"Content-Type": "application/json"}
        )
        assert response.status == 200

    exposition = await (await client.get("/metrics")).text()

    leaked = sorted(value for value in sent if value in exposition)
    assert leaked == []
    assert not (national_ids_in_fixtures() & set(re.findall(r"\d{11}", exposition)))
    assert token not in exposition

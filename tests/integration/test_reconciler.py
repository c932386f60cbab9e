"""The reconciler against the real broker and the fake Maskinporten + Altinn Events (devtools/fake_altinn.py).

Events carry fresh ids per test and are read back with confluent-kafka by their
``ce_id`` header, so the session broker's other records do not matter. The fake's
clock is injected where time matters (visibility delay, token expiry): no sleeps.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry

from bridge.altinn.events_api import EventsApi, RetryPolicy
from bridge.altinn.settings import MaskinportenSettings
from bridge.altinn.tokens import TokenProvider
from bridge.config import Settings
from bridge.cursor_store import Cursor, CursorStore
from bridge.dedupe_store import DedupeFollower
from bridge.leadership import Leadership
from bridge.metrics import Metrics
from bridge.pipeline import Pipeline
from bridge.publisher import KafkaPublisher
from bridge.reconciler import PageNotAccepted, Reconciler, count_retry
from devtools.broker import create_cursor_topic
from devtools.fake_altinn import FakeAltinn, Urls
from tests.support.altinn import CLIENT_ID, KEY_ID, RESOURCE, Clock
from tests.support.events import VALID
from tests.support.kafka import ce_id_counts
from tests.support.logs import LOG_DIR
from tests.support.metrics import sample
from tests.support.waiting import polled, wait_for_status

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def event(*, age_s: float = 60.0, now: float | None = None) -> dict[str, Any]:
    """A Correspondence event of RESOURCE with a fresh id and a ``time`` ``age_s`` ago."""
    body = orjson.loads(VALID[5].read_bytes())
    at = (now if now is not None else time.time()) - age_s
    body["id"] = str(uuid.uuid4())
    body["time"] = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    body["resource"] = RESOURCE
    return body


def landed(bootstrap: str, ids: list[str]) -> dict[str, int]:
    """How many records of each event id are in the event topics (0 for the ones that are not)."""
    counts = ce_id_counts(bootstrap, ids)
    return {event_id: counts[event_id] for event_id in ids}


@pytest.fixture
def cursor_topic(kafka_bootstrap: str) -> str:
    """A cursor topic (one partition, compacted) of this test's own."""
    topic = f"test.reconcile-cursor.{uuid.uuid4().hex[:12]}"
    asyncio.run(create_cursor_topic(kafka_bootstrap, topic))
    return topic


@pytest.fixture
def settings(kafka_bootstrap: str, cursor_topic: str) -> Settings:
    return Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",  # Tansu cannot (docs/configuration.md)
            "KAFKA_CLIENT_ID": f"reconciler-test-{uuid.uuid4().hex[:8]}",
            "BRIDGE_AUTH": "none",
            "BRIDGE_DEDUPE": "kafka",
            "BRIDGE_RECONCILE_CURSOR_TOPIC": cursor_topic,
            "BRIDGE_RECONCILE_SESSION_TIMEOUT_S": "3",  # Tansu holds joins for half of it
        }
    )


class Side:
    """One replica's reconciling side, in process: producer, pipeline with the dedupe window loaded."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics(CollectorRegistry())
        self.publisher = KafkaPublisher(settings.kafka)
        self.pipeline = Pipeline(settings, self.publisher, self.metrics)
        self.follower = DedupeFollower(settings, self.pipeline, self.metrics)
        self.store = CursorStore(settings.kafka, settings.reconcile.cursor_topic, self.publisher)

    async def start(self) -> None:
        await self.publisher.start()
        await self.follower.load()
        self.pipeline.lifecycle.window_loaded()

    async def stop(self) -> None:
        await self.follower.stop()
        await self.pipeline.settle_background(5)
        await self.publisher.stop()

    async def push(self, body: dict[str, Any]) -> str:
        """What the webhook does with a pushed event; its outcome."""
        outcome = await self.pipeline.ingest(orjson.dumps(body), "application/json", time.time())
        await self.pipeline.settle_background(5)  # the state record, for the other replicas
        return outcome.outcome

    def reconciler(
        self, api: EventsApi, clock: Clock, *, pipeline: Any = None, max_age_s: float | None = 48 * 3600.0
    ) -> Reconciler:
        return Reconciler(
            pipeline=pipeline or self.pipeline,
            api=api,
            store=self.store,
            metrics=self.metrics,
            resource=RESOURCE,
            page_size=2,  # several pages from a few events
            max_age_s=max_age_s,
            clock=clock,
        )


@pytest.fixture
def tokens(http: aiohttp.ClientSession, urls: Urls, key_file: Path, clock: Clock) -> TokenProvider:
    maskinporten = MaskinportenSettings(
        client_id=CLIENT_ID,
        key_id=KEY_ID,
        private_key_file=str(key_file),
        scopes=("altinn:events.subscribe",),
        token_url=urls.token_url,
        audience=urls.audience,
    )
    return TokenProvider(http, maskinporten, urls.platform_url, clock=clock)


@pytest.fixture
async def sides(settings: Settings) -> AsyncIterator[Any]:
    started: list[Side] = []

    async def make() -> Side:
        side = Side(settings)
        await side.start()
        started.append(side)
        return side

    yield make
    for side in started:
        await side.stop()


def api_for(session: aiohttp.ClientSession, urls: Urls, tokens: TokenProvider, side: Side) -> EventsApi:
    return EventsApi(
        session,
        urls.platform_url,
        tokens,
        retry=RetryPolicy(base_delay_s=0.01, max_delay_s=0.05),
        on_retry=count_retry(side.metrics),
    )


def pulled_after(fake: FakeAltinn) -> list[str]:
    """The ``after`` of every pull the fake received, in order."""
    return [dict(r.query)["after"] for r in fake.received if r.path == "/events/api/v1/events"]


@dataclass
class Rig:
    """The fakes, the clock and a way to make replicas, for the in-process scenarios."""

    bootstrap: str
    fake: FakeAltinn
    clock: Clock
    sides: Any
    session: aiohttp.ClientSession
    urls: Urls
    tokens: TokenProvider

    async def side(self) -> Side:
        return await self.sides()

    def reconciler(self, side: Side, **options: Any) -> Reconciler:
        return side.reconciler(api_for(self.session, self.urls, self.tokens, side), self.clock, **options)


@pytest.fixture
def rig(kafka_bootstrap, fake, clock, sides, http, urls, tokens) -> Rig:  # noqa: PLR0917
    return Rig(kafka_bootstrap, fake, clock, sides, http, urls, tokens)


# --- the scenarios of the issue ---------------------------------------------------


async def test_a_pushed_event_is_not_published_again_and_a_lost_push_is_published_once(rig: Rig) -> None:
    pusher = await rig.side()
    pushed, lost, ancient = event(), event(), event(age_s=3 * 86400)
    assert await pusher.push(pushed) == "published"
    rig.fake.add_events([ancient, pushed, lost])

    side = await rig.side()  # another replica: learns the push from the state topic
    reconciler = rig.reconciler(side)
    await reconciler.begin()
    await reconciler.catch_up()

    assert reconciler.totals.as_json() | {"seconds": 0, "rate_per_s": 0} == {
        "pages": 2,
        "fetched": 3,
        "published": 1,
        "duplicates": 1,
        "filtered": 0,
        "dead_lettered": 0,
        "skipped_too_old": 1,
        "rejected": 0,
        "cursor_unknown": 0,
        "seconds": 0,
        "rate_per_s": 0,
    }
    assert landed(rig.bootstrap, [pushed["id"], lost["id"], ancient["id"]]) == {
        pushed["id"]: 1,
        lost["id"]: 1,
        ancient["id"]: 0,  # older than the dedupe window: skipped, not published
    }
    assert sample(side.metrics.registry, "altinn_bridge_reconcile_fetched_total") == 3
    assert sample(side.metrics.registry, "altinn_bridge_reconcile_repaired_total") == 1
    assert sample(side.metrics.registry, "altinn_bridge_reconcile_skipped_total") == 1
    lag = sample(side.metrics.registry, "altinn_bridge_reconcile_lag_seconds")
    assert 55 < lag < 120  # the newest event is ~60 s old
    # The cursor is stored after the last event, and an empty page ended the run (no `next` needed).
    stored = await side.store.load(RESOURCE)
    assert stored is not None
    assert stored.after == lost["id"]
    assert pulled_after(rig.fake) == ["0", pushed["id"], lost["id"]]


async def test_a_restart_resumes_from_the_stored_cursor(rig: Rig) -> None:
    first, second, third = event(), event(), event()
    rig.fake.add_events([first, second])
    side = await rig.side()
    reconciler = rig.reconciler(side)
    await reconciler.begin()
    await reconciler.catch_up()
    rig.fake.received.clear()

    rig.fake.add_event(third)
    restarted = await rig.side()
    again = rig.reconciler(restarted)
    assert (await again.begin()).after == second["id"]
    await again.catch_up()

    assert pulled_after(rig.fake)[0] == second["id"]
    assert again.totals.fetched == 1
    assert again.totals.cursor_unknown == 0
    assert landed(rig.bootstrap, [first["id"], second["id"], third["id"]]) == {
        first["id"]: 1,
        second["id"]: 1,
        third["id"]: 1,
    }


async def test_an_unknown_cursor_is_detected_and_reading_goes_on(rig: Rig) -> None:
    side = await rig.side()
    now = rig.clock()
    # A cursor Altinn does not know (deleted, another environment), at an event from now.
    await side.store.save(
        RESOURCE, Cursor("no-such-event-id", after_time=now, newest_event_time=now, updated_at=now)
    )
    old = [event(age_s=5 * 3600), event(age_s=4 * 3600)]
    rig.fake.add_events(old)

    reconciler = rig.reconciler(side)
    assert (await reconciler.begin()).after == "no-such-event-id"
    await reconciler.catch_up()

    assert reconciler.totals.cursor_unknown == 1
    assert sample(side.metrics.registry, "altinn_bridge_reconcile_errors_total", kind="cursor_unknown") == 1
    assert reconciler.cursor.after == old[-1]["id"]
    assert landed(rig.bootstrap, [e["id"] for e in old]) == dict.fromkeys((e["id"] for e in old), 1)
    log = (LOG_DIR / "in-process.log").read_text()
    assert "does not know the stored cursor" in log


async def test_a_known_cursor_is_not_reported_unknown(rig: Rig) -> None:
    """The detection can fail the other way too: a cursor Altinn knows raises nothing."""
    side = await rig.side()
    first, second = event(age_s=5 * 3600), event(age_s=60)
    rig.fake.add_events([first, second])
    now = rig.clock()
    await side.store.save(RESOURCE, Cursor(first["id"], after_time=now - 5 * 3600, updated_at=now))
    reconciler = rig.reconciler(side)
    await reconciler.begin()
    await reconciler.catch_up()
    assert reconciler.totals.cursor_unknown == 0
    assert reconciler.totals.fetched == 1


async def test_expired_and_revoked_tokens_are_refreshed(rig: Rig) -> None:
    rig.fake.altinn_token_lifetime_s = 300
    side = await rig.side()
    reconciler = rig.reconciler(side)
    await reconciler.begin()
    assert await reconciler.poll() == 0
    assert rig.fake.altinn_tokens_issued == 1

    rig.clock.advance(600)  # the cached token expired: a new one before the call
    expiring = event(now=rig.clock())
    rig.fake.add_event(expiring)
    assert await reconciler.poll() == 1
    assert rig.fake.altinn_tokens_issued == 2

    rig.fake.revoke_altinn_tokens()  # refused by Altinn (401): one new token, the call again
    revoked = event(now=rig.clock())
    rig.fake.add_event(revoked)
    assert await reconciler.poll() == 1
    assert rig.fake.altinn_tokens_issued == 3
    assert [r.status for r in rig.fake.received][-2:] == [401, 200]
    assert landed(rig.bootstrap, [expiring["id"], revoked["id"]]) == {expiring["id"]: 1, revoked["id"]: 1}


async def test_429_and_5xx_are_retried_with_backoff_and_counted(rig: Rig) -> None:
    side = await rig.side()
    rig.fake.add_events([event()])
    rig.fake.fail_next(429, retry_after="0")
    rig.fake.fail_next(503)
    reconciler = rig.reconciler(side)
    await reconciler.begin()
    assert await reconciler.poll() == 1
    assert sample(side.metrics.registry, "altinn_bridge_reconcile_errors_total", kind="rate_limited") == 1
    assert (
        sample(side.metrics.registry, "altinn_bridge_reconcile_errors_total", kind="altinn_unavailable") == 1
    )
    assert sample(side.metrics.registry, "altinn_bridge_reconcile_repaired_total") == 1


async def test_events_are_pulled_only_after_the_visibility_delay(rig: Rig) -> None:
    side = await rig.side()
    fresh = event(age_s=0, now=rig.clock())
    rig.fake.add_event(fresh, age_s=0)
    reconciler = rig.reconciler(side)
    await reconciler.begin()
    assert await reconciler.poll() == 0  # registered just now: not visible yet
    assert reconciler.cursor.after == "0"
    rig.clock.advance(31)
    assert await reconciler.poll() == 1
    assert reconciler.cursor.after == fresh["id"]


async def test_a_page_kafka_did_not_take_is_retried_from_the_last_event_handled(rig: Rig) -> None:
    side = await rig.side()
    events = [event(), event(), event()]
    rig.fake.add_events(events)

    class FailSecondOnce:
        """The pipeline, except that the second event of the first batch comes back unavailable."""

        failed = False

        async def ingest_batch(self, items: list[object], received_at: float) -> list[dict[str, object]]:
            if self.failed or len(items) < 2:
                return await side.pipeline.ingest_batch(items, received_at)
            self.failed = True
            [first] = await side.pipeline.ingest_batch(items[:1], received_at)
            return [first, {"index": 1, "outcome": "unavailable", "retryable": True, "detail": "injected"}]

    reconciler = rig.reconciler(side, pipeline=FailSecondOnce())
    await reconciler.begin()
    with pytest.raises(PageNotAccepted):
        await reconciler.catch_up()
    stored = await side.store.load(RESOURCE)
    assert stored is not None
    assert stored.after == events[0]["id"]  # not past the event that failed
    await reconciler.catch_up()
    assert reconciler.cursor.after == events[-1]["id"]
    assert landed(rig.bootstrap, [e["id"] for e in events]) == dict.fromkeys((e["id"] for e in events), 1)


async def test_only_one_member_of_the_group_reconciles_and_another_takes_over(settings: Settings) -> None:
    running_work: list[str] = []

    def member(name: str) -> tuple[Leadership, asyncio.Task[None]]:
        leadership = Leadership(
            settings.kafka,
            settings.reconcile.cursor_topic,
            session_timeout_s=settings.reconcile.session_timeout_s,
        )

        async def work() -> None:
            running_work.append(name)
            try:
                await asyncio.Event().wait()
            finally:
                running_work.remove(name)

        return leadership, asyncio.create_task(leadership.run(work), name=name)

    a, a_task = member("a")
    b, b_task = member("b")
    try:
        async with asyncio.timeout(30):
            while not (a.decided.is_set() and b.decided.is_set() and running_work):
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # a second rebalance would show here
        assert len(running_work) == 1
        assert [a.leader, b.leader].count(True) == 1
        leader_task, follower = (a_task, b) if a.leader else (b_task, a)
        leader_task.cancel()  # the holder stops (leaves the group)
        await asyncio.gather(leader_task, return_exceptions=True)
        async with asyncio.timeout(30):
            while not follower.leader:
                await asyncio.sleep(0.1)
        assert len(running_work) == 1
    finally:
        for task in (a_task, b_task):
            task.cancel()
        await asyncio.gather(a_task, b_task, return_exceptions=True)


# --- the server in continuous mode, and the one-shot command -------------------------


def reconcile_env(settings: Settings, altinn_env: dict[str, str]) -> dict[str, str]:
    return {
        "KAFKA_CLIENT_ID": settings.kafka.client_id,
        "BRIDGE_DEDUPE": "kafka",
        "BRIDGE_RECONCILE_CURSOR_TOPIC": settings.reconcile.cursor_topic,
        "BRIDGE_RECONCILE_SESSION_TIMEOUT_S": "3",
        "BRIDGE_RECONCILE_RESOURCE": RESOURCE,
        **altinn_env,
    }


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(url + "/metrics") as response:
        text = await response.text()
    values = {}
    for line in text.splitlines():
        if line.startswith("altinn_bridge_reconcile"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def wait_for_metric(
    http: aiohttp.ClientSession, url: str, name: str, value: float, timeout_s: float = 30.0
) -> dict[str, float]:
    return await polled(
        lambda: scrape(http, url),
        lambda values: values.get(name) == value,
        what=f"{name} reaching {value}",
        timeout_s=timeout_s,
        every_s=0.2,
    )


async def test_the_server_reconciles_continuously_and_resumes_after_a_restart(  # noqa: PLR0917
    kafka_bootstrap, settings, altinn_env, fake, start_bridge, http
) -> None:
    env = {
        **reconcile_env(settings, altinn_env),
        "BRIDGE_RECONCILE": "on",
        "BRIDGE_RECONCILE_INTERVAL_S": "0.2",
    }
    bridge = start_bridge(kafka_bootstrap, **env)
    await wait_for_status(http, bridge.url + "/readyz", 200)
    await wait_for_metric(http, bridge.url, "altinn_bridge_reconcile_active", 1)

    pushed, lost = event(), event()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    async with http.post(
        bridge.url + "/api/v1/events", data=orjson.dumps(pushed), headers=headers
    ) as response:
        assert response.status == 200
        assert (await response.json())["outcome"] == "published"
    fake.add_events([pushed, lost])
    values = await wait_for_metric(http, bridge.url, "altinn_bridge_reconcile_fetched_total", 2)
    assert values["altinn_bridge_reconcile_repaired_total"] == 1
    assert bridge.terminate() == 0

    fake.received.clear()
    later = event()
    fake.add_event(later)
    restarted = start_bridge(kafka_bootstrap, **env)
    await wait_for_status(http, restarted.url + "/healthz", 200)
    values = await wait_for_metric(http, restarted.url, "altinn_bridge_reconcile_repaired_total", 1)
    assert values["altinn_bridge_reconcile_fetched_total"] == 1  # not pushed, lost again: only the new one
    assert pulled_after(fake)[0] == lost["id"]
    assert restarted.terminate() == 0
    ids = [pushed["id"], lost["id"], later["id"]]
    assert landed(kafka_bootstrap, ids) == dict.fromkeys(ids, 1)
    assert "reconciler holds the cursor" in bridge.log()


async def test_the_one_shot_command_back_fills_and_reports(
    kafka_bootstrap, settings, altinn_env, fake
) -> None:
    events = [event(), event(), event()]
    fake.add_events(events)
    env = {
        "PATH": "/usr/bin:/bin",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "BRIDGE_AUTH": "none",
        **reconcile_env(settings, altinn_env),
    }
    command = [sys.executable, "-m", "bridge", "reconcile", "--from-start", "--size", "2"]
    result = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["resource"] == RESOURCE
    assert summary["start_after"] == "0"
    assert summary["cursor"] == events[-1]["id"]
    assert (summary["fetched"], summary["published"], summary["duplicates"]) == (3, 3, 0)
    assert "fetched 2  published 2" in result.stderr  # progress per page
    ids = [e["id"] for e in events]
    assert landed(kafka_bootstrap, ids) == dict.fromkeys(ids, 1)

    # Again from the stored cursor: nothing new, nothing published.
    again = await asyncio.to_thread(
        subprocess.run,
        [*command[:4], "--resource", RESOURCE],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert (
        json.loads(again.stdout).items()
        >= {"start_after": events[-1]["id"], "fetched": 0, "published": 0}.items()
    )

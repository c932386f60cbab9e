"""The app factory and the lifecycle of what the app owns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from bridge import views
from bridge.auth import Guard, parse_networks
from bridge.config import DedupeMode, Settings
from bridge.dedupe_store import DedupeFollower
from bridge.health import Readiness
from bridge.http_contract import (
    EVENTS_PATH,
    EVENTS_TOKEN_ROUTE,
    HEALTHZ_PATH,
    METRICS_PATH,
    OPENAPI_PATH,
    READYZ_PATH,
)
from bridge.http_log import FALLBACK_PATH, HttpLog
from bridge.lifecycle import Admission, Lifecycle, Phase
from bridge.logs import get_logger
from bridge.metrics import Metrics
from bridge.middleware import fallback, logged
from bridge.pipeline import Pipeline
from bridge.publisher import KafkaPublisher, Publisher
from bridge.server_settings import AuthMode
from bridge.state import BRIDGE, Bridge

#: Back-off between attempts to connect the producer at start-up, in seconds.
CONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
#: Bound on flushing and closing the producer when the app stops, in seconds.
PRODUCER_STOP_TIMEOUT_S = 10.0
#: How often the reconciler checks whether the producer and the dedupe window are ready, in seconds.
RECONCILE_START_POLL_S = 0.2

_log = get_logger("bridge.app")


def create_app(
    settings: Settings,
    *,
    publisher: Publisher | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """Build the aiohttp application. Nothing connects until the app starts."""
    publisher = publisher if publisher is not None else KafkaPublisher(settings.kafka)
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    lifecycle = Lifecycle(needs_dedupe_window=settings.dedupe.mode is DedupeMode.KAFKA)
    # One process: the in-flight gauge reads the count when scraped (no write per request);
    # several workers each write theirs (a gauge cannot be a function in multiprocess mode).
    multiprocess = settings.process.metrics_dir is not None
    admission = Admission(lifecycle, settings.http.max_in_flight, metrics.in_flight if multiprocess else None)
    if not multiprocess:
        metrics.in_flight.set_function(lambda: admission.requests)
    pipeline = Pipeline(settings, publisher, metrics, lifecycle, admission)
    bridge = Bridge(
        settings=settings,
        publisher=publisher,
        metrics=metrics,
        lifecycle=lifecycle,
        admission=admission,
        pipeline=pipeline,
        readiness=Readiness(settings.health, lifecycle, publisher),
        http_log=HttpLog(metrics),
        guard=Guard(
            settings.auth.tokens,
            required=settings.auth.mode is AuthMode.TOKEN,
            allowlist=parse_networks(settings.auth.allowed_networks),
            trusted_proxies=parse_networks(settings.auth.trusted_proxies),
        ),
        follower=(
            DedupeFollower(settings, pipeline, metrics) if settings.dedupe.mode is DedupeMode.KAFKA else None
        ),
    )
    app = web.Application(
        # Event bodies are read (and limited) by the handler itself; this bounds the rest.
        client_max_size=max(settings.http.max_body_bytes, settings.http.max_batch_bytes),
    )
    app[BRIDGE] = bridge
    # No middleware: the event route logs, counts and maps its errors in one pass; every
    # other route is wrapped (logged) and the catch-all answers 404/405 as problem+json.
    allowed: dict[str, tuple[str, ...]] = {EVENTS_PATH: ("POST",)}
    app.router.add_post(EVENTS_PATH, views.receive_event)
    if settings.auth.mode is AuthMode.TOKEN:
        # The way Altinn can authenticate: it cannot add headers, only call a URL.
        app.router.add_post(EVENTS_TOKEN_ROUTE, views.receive_event)
        allowed[EVENTS_PATH + "/"] = ("POST",)
    for path, handler in (
        (HEALTHZ_PATH, views.healthz),
        (READYZ_PATH, views.readyz),
        (METRICS_PATH, views.metrics),
        (OPENAPI_PATH, views.openapi_json),
    ):
        app.router.add_get(path, logged(handler))
        allowed[path] = ("GET", "HEAD")
    app.router.add_route("*", FALLBACK_PATH, fallback(allowed))
    app.cleanup_ctx.append(_producer_ctx)
    if settings.is_worker:
        app.cleanup_ctx.append(_readiness_ctx)
    if settings.reconcile.enabled:
        # After the producer's context, so it is stopped first and the producer flushes last.
        app.cleanup_ctx.append(_reconcile_ctx)
    return app


async def _producer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect the producer and load the dedupe window; at the end flush and stop it.

    In the background so the server (and /healthz) answers while Kafka is down.
    """
    bridge = app[BRIDGE]
    connecting = asyncio.create_task(_connect(bridge), name="kafka-connect")
    yield
    if not connecting.done():
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
    if bridge.follower is not None:
        await bridge.follower.stop()
    if not bridge.lifecycle.producer_started:
        return
    timeout_s = PRODUCER_STOP_TIMEOUT_S
    if bridge.lifecycle.deadline is not None:
        timeout_s = max(0.5, min(timeout_s, bridge.lifecycle.deadline - time.monotonic()))
    # Dedupe state records still on their way, then the producer's flush.
    cut_short = await bridge.pipeline.settle_background(timeout_s / 2)
    if cut_short:
        _log.warning("dedupe state records not written before stopping", count=cut_short)
    try:
        async with asyncio.timeout(timeout_s):
            await bridge.publisher.stop()
        _log.info("producer stopped")
    except TimeoutError:
        _log.error("producer stop timed out; unsent records may be lost", timeout_s=timeout_s)


async def _readiness_ctx(app: web.Application) -> AsyncIterator[None]:
    """With several workers, keep each one's ready gauge current without a probe.

    A probe reaches one worker; /metrics reports the minimum over all of them,
    so each must evaluate itself (every second until ready, then per interval).
    """
    bridge = app[BRIDGE]

    async def refresh() -> None:
        while True:
            problems = await bridge.readiness.problems()
            bridge.metrics.ready.set(0 if problems else 1)
            await asyncio.sleep(1.0 if problems else max(bridge.settings.health.ready_check_interval_s, 1.0))

    task = asyncio.create_task(refresh(), name="readiness-gauge")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _reconcile_ctx(app: web.Application) -> AsyncIterator[None]:
    """Continuous reconciling (BRIDGE_RECONCILE=on) in the background; stopped before the producer."""
    task = asyncio.create_task(_reconcile(app[BRIDGE]), name="reconciler")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _reconcile(bridge: Bridge) -> None:
    """Once events can be published and deduped, reconcile until cancelled.

    Altinn, Kafka and cursor trouble is retried inside (counted, never fatal). What
    escapes is a defect: the bridge stops (exit 1) rather than keep running
    without the repair it was configured to do; a restarted pod, or another
    replica taking over the group, carries on from the stored cursor.
    """
    # Imported here: a bridge that does not reconcile never loads the Altinn client.
    from bridge.reconcile_runner import run_continuously  # noqa: PLC0415

    # The phase other tasks move; a poll keeps them where they are.
    while bridge.lifecycle.phase is Phase.STARTING:  # noqa: ASYNC110
        await asyncio.sleep(RECONCILE_START_POLL_S)
    if bridge.lifecycle.phase is not Phase.READY:
        return  # stopping or failed before it could start
    try:
        await run_continuously(bridge.settings, bridge.pipeline, bridge.publisher, bridge.metrics)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - whatever killed it, the bridge must stop
        _log.exception("reconciler died; stopping the bridge")
    bridge.lifecycle.fail("reconciler stopped")


async def _connect(bridge: Bridge) -> None:
    attempt = 0
    while True:
        try:
            await bridge.publisher.start()
        except Exception as exc:  # noqa: BLE001 - any failure to connect is retried
            delay = CONNECT_BACKOFF_S[min(attempt, len(CONNECT_BACKOFF_S) - 1)]
            _log.warning("kafka connect failed; retrying", error=str(exc), retry_in_s=delay)
            attempt += 1
            await asyncio.sleep(delay)
        else:
            bridge.lifecycle.producer_up()
            _log.info("producer started", bootstrap_servers=list(bridge.settings.kafka.bootstrap_servers))
            break
    if bridge.follower is not None:
        await _load_dedupe(bridge, bridge.follower)
        await _follow(bridge, bridge.follower)


async def _load_dedupe(bridge: Bridge, follower: DedupeFollower) -> None:
    attempt = 0
    while True:
        try:
            report = await follower.load()
        except Exception as exc:  # noqa: BLE001 - any failure to load is retried; not ready meanwhile
            await follower.stop()
            delay = CONNECT_BACKOFF_S[min(attempt, len(CONNECT_BACKOFF_S) - 1)]
            _log.warning("dedupe window not loaded; retrying", error=str(exc), retry_in_s=delay)
            attempt += 1
            await asyncio.sleep(delay)
        else:
            bridge.lifecycle.window_loaded()
            _log.info(
                "dedupe window loaded",
                topic=bridge.settings.dedupe.topic,
                state_records=report.state_records,
                remembered=report.remembered,
                tail_records=report.tail_records,
                recovered=report.recovered,
                took_s=report.took_s,
            )
            return


async def _follow(bridge: Bridge, follower: DedupeFollower) -> None:
    """Follow the state topic; if that stops for any reason but shutdown, the process must exit."""
    try:
        await follower.follow()
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - whatever killed it, the bridge must stop
        _log.exception("dedupe follower died; stopping the bridge")
    bridge.lifecycle.fail("dedupe follower stopped", window_lost=True)

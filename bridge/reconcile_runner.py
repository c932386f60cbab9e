"""Running the reconciler: continuously inside the server, or once from the command line.

Both wire the same pieces: an Altinn client (:class:`TokenProvider` +
:class:`EventsApi`), the cursor store, the single-member rule
(:class:`bridge.leadership.Leadership`) and a :class:`Reconciler` over a
:class:`bridge.pipeline.Pipeline`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

import aiohttp
import orjson
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from bridge.altinn.errors import AltinnError
from bridge.altinn.events_api import EventsApi
from bridge.altinn.settings import AltinnSettings
from bridge.altinn.tokens import TokenProvider
from bridge.config import DedupeMode, Settings
from bridge.cursor_store import CursorStore, CursorTopicMissing
from bridge.dedupe_store import DedupeFollower, StateTopicMissing
from bridge.errors import PublishError
from bridge.leadership import Leadership, NotLeader
from bridge.logs import get_logger
from bridge.metrics import Metrics
from bridge.pipeline import Pipeline
from bridge.publisher import KafkaPublisher, Publisher
from bridge.reconciler import BACKOFF_S, PageNotAccepted, Reconciler, Totals, count_retry, error_kind

#: Bound on one HTTP exchange with Altinn or Maskinporten, in seconds.
HTTP_TIMEOUT_S = 60.0
#: A one-shot run retries a page Kafka did not take this many times before giving up.
ONE_SHOT_PAGE_ATTEMPTS = 4

_log = get_logger("bridge.reconcile")


async def run_continuously(
    settings: Settings, pipeline: Pipeline, publisher: Publisher, metrics: Metrics
) -> None:
    """The server's reconciler: hold the group, reconcile while holding the cursor. Until cancelled.

    Trouble with Kafka's group or the cursor topic is counted and retried with
    backoff; what :func:`bridge.reconciler.error_kind` does not know propagates.
    """
    rc = settings.reconcile
    if rc.altinn is None or rc.altinn.maskinporten is None or rc.resource is None:
        raise RuntimeError("reconciling needs BRIDGE_RECONCILE_RESOURCE and the Maskinporten client")
    altinn, resource = rc.altinn, rc.resource
    store = CursorStore(settings.kafka, rc.cursor_topic, publisher)
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        assert altinn.maskinporten is not None  # noqa: S101 - checked above; for mypy
        tokens = TokenProvider(session, altinn.maskinporten, altinn.platform_url)
        api = EventsApi(session, altinn.platform_url, tokens, on_retry=count_retry(metrics))

        async def reconcile() -> None:
            # A new reconciler per leadership: the cursor another replica stored last is loaded.
            reconciler = Reconciler(
                pipeline=pipeline,
                api=api,
                store=store,
                metrics=metrics,
                resource=resource,
                page_size=rc.page_size,
                max_age_s=settings.dedupe.window_s,
            )
            try:
                await reconciler.run_forever(rc.interval_s)
            finally:
                metrics.reconcile_lag.set(0)
                metrics.reconcile_cursor_age.set(0)

        leadership = Leadership(
            settings.kafka,
            rc.cursor_topic,
            session_timeout_s=rc.session_timeout_s,
            on_change=lambda held: metrics.reconcile_active.set(1 if held else 0),
        )
        failures = 0
        while True:
            try:
                await leadership.run(reconcile)
            except Exception as exc:
                kind = error_kind(exc)
                if kind is None:
                    raise
                metrics.reconcile_errors.labels(kind).inc()
                wait = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                _log.warning("reconciler group failed; retrying", kind=kind, error=str(exc), retry_in_s=wait)
                await asyncio.sleep(wait)


async def run_once(
    settings: Settings,
    altinn: AltinnSettings,
    *,
    resource: str,
    after: str | None,
    size: int,
    max_age_s: float | None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """``altinn-bridge reconcile``: catch up once; 0 when caught up, 1 on failure.

    Progress lines go to ``err``, the summary (JSON) to ``out``.
    """
    if settings.dedupe.mode is not DedupeMode.KAFKA or altinn.maskinporten is None:
        print(
            "altinn-bridge reconcile: needs BRIDGE_DEDUPE=kafka (the shared window tells pushed events "
            "apart) and the Maskinporten client (MASKINPORTEN_*)",
            file=err,
        )
        return 2
    metrics = Metrics(CollectorRegistry())
    publisher = KafkaPublisher(settings.kafka)
    pipeline = Pipeline(settings, publisher, metrics)
    follower = DedupeFollower(settings, pipeline, metrics)
    summary: dict[str, object] = {"resource": resource}
    code = 1

    def progress(totals: Totals) -> None:
        t = totals.as_json()
        print(
            f"fetched {t['fetched']}  published {t['published']}  duplicates {t['duplicates']}  "
            f"skipped {t['skipped_too_old']}  {t['rate_per_s']}/s",
            file=err,
            flush=True,
        )

    try:
        await publisher.start()
        await follower.load()
        pipeline.lifecycle.window_loaded()
        following = asyncio.create_task(follower.follow(), name="dedupe-follow")
        try:
            code = await _reconcile_once(
                settings,
                altinn,
                metrics,
                pipeline,
                publisher,
                resource,
                after,
                size,
                max_age_s,
                progress,
                summary,
            )
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
    except (
        AltinnError,
        PublishError,
        KafkaError,
        NotLeader,
        PageNotAccepted,
        StateTopicMissing,
        CursorTopicMissing,
        OSError,
        ValueError,
    ) as exc:
        summary["error"] = str(exc) or type(exc).__name__
        print(f"altinn-bridge reconcile: {summary['error']}", file=err)
    finally:
        await follower.stop()
        await pipeline.settle_background(5.0)
        try:
            async with asyncio.timeout(10.0):
                await publisher.stop()
        except TimeoutError:
            print("altinn-bridge reconcile: producer stop timed out", file=err)
    print(orjson.dumps(summary).decode(), file=out, flush=True)
    return code


async def _reconcile_once(  # noqa: PLR0917 - the command's options, passed through
    settings: Settings,
    altinn: AltinnSettings,
    metrics: Metrics,
    pipeline: Pipeline,
    publisher: Publisher,
    resource: str,
    after: str | None,
    size: int,
    max_age_s: float | None,
    progress: Callable[[Totals], None],
    summary: dict[str, object],
) -> int:
    assert altinn.maskinporten is not None  # noqa: S101 - checked by the caller; for mypy
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        tokens = TokenProvider(session, altinn.maskinporten, altinn.platform_url)
        api = EventsApi(session, altinn.platform_url, tokens, on_retry=count_retry(metrics))
        reconciler = Reconciler(
            pipeline=pipeline,
            api=api,
            store=CursorStore(settings.kafka, settings.reconcile.cursor_topic, publisher),
            metrics=metrics,
            resource=resource,
            page_size=size,
            max_age_s=max_age_s,
            on_page=progress,
        )

        async def work() -> None:
            start = await reconciler.begin(after)
            summary["start_after"] = start.after
            await _catch_up_retrying(reconciler)

        leadership = Leadership(
            settings.kafka,
            settings.reconcile.cursor_topic,
            session_timeout_s=settings.reconcile.session_timeout_s,
        )
        try:
            await leadership.run(work, give_up_if_follower=True)
        finally:
            summary.update(reconciler.totals.as_json())
            summary["cursor"] = reconciler.cursor.after
    return 0


async def _catch_up_retrying(
    reconciler: Reconciler, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> None:
    for attempt in range(ONE_SHOT_PAGE_ATTEMPTS):
        try:
            await reconciler.catch_up()
        except PageNotAccepted as exc:
            if attempt + 1 == ONE_SHOT_PAGE_ATTEMPTS:
                raise
            _log.warning("page not accepted; retrying", error=str(exc))
            await sleep(BACKOFF_S[attempt])
        else:
            return

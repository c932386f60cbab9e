"""A load client for the fault scenarios, and what Kafka says about it afterwards.

:class:`Load` posts *distinct* valid Altinn events (the correspondencepublished
fixture with a fresh ``id`` and ``resourceinstance`` each) to a bridge, either
open loop (one request started every ``1/rate`` s whatever the answers, at most
``max_in_flight`` at once) or closed loop (``workers`` posting back to back). It
keeps, per event id, the body sent, the status (``"error"`` for a connection
failure or timeout), the latency, the problem ``type`` or ``outcome`` answered and
``Retry-After``. :meth:`Load.resend_all` re-sends every body ever sent, the way
Altinn retries.

:func:`report` reads the event topics back with confluent-kafka (an independent
client) and counts, over the ids this load sent, which 2xx ids are missing (lost)
and which ids are in Kafka more than once (duplicates), matching on the record
header ``ce_id``.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import orjson

from tests.support.events import ALTINN_CONTENT_TYPE, FIXTURES
from tests.support.http import EVENTS_PATH
from tests.support.kafka import ce_id_counts

TEMPLATE = orjson.loads((FIXTURES / "valid" / "06-correspondencepublished.json").read_bytes())
#: What a connection failure or client-side timeout is recorded as, instead of a status.
ERROR = "error"


def new_event() -> tuple[str, bytes]:
    """A distinct valid event: its id and its body."""
    event = {**TEMPLATE, "id": str(uuid.uuid4()), "resourceinstance": str(uuid.uuid4())}
    return str(event["id"]), orjson.dumps(event)


@dataclass(slots=True)
class Result:
    """One POST: when it started (s since the load began), what came back, how long it took."""

    event_id: str
    started_s: float
    status: int | str = ERROR
    latency_s: float = 0.0
    retry_after: str | None = None
    content_type: str | None = None
    #: ``outcome`` of a 2xx answer, or the problem ``type`` of an error answer.
    answer: str | None = None
    #: ``(topic, partition, offset)`` a 2xx answer names.
    location: tuple[object, object, object] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300


@dataclass
class Load:
    """Posts distinct events to ``url`` and remembers everything it sent and got."""

    url: str
    timeout_s: float = 10.0
    max_in_flight: int = 200
    bodies: dict[str, bytes] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    #: Requests an open loop did not start because ``max_in_flight`` were pending.
    skipped: int = 0
    _t0: float = field(default_factory=time.monotonic)
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    def now(self) -> float:
        """Seconds since this load was created."""
        return time.monotonic() - self._t0

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            connector=aiohttp.TCPConnector(limit=self.max_in_flight),
        )

    async def post(self, http: aiohttp.ClientSession, event_id: str, body: bytes, url: str = "") -> Result:
        """POST one body; never raises for what the bridge or the network did."""
        result = Result(event_id, self.now())
        started = time.monotonic()
        try:
            async with http.post(
                (url or self.url) + EVENTS_PATH, data=body, headers={"Content-Type": ALTINN_CONTENT_TYPE}
            ) as response:
                raw = await response.read()
                result.status = response.status
                result.retry_after = response.headers.get("Retry-After")
                result.content_type = response.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.error = type(exc).__name__
        else:
            try:
                answer = orjson.loads(raw)
                result.answer = answer.get("outcome") or answer.get("type")
                if "offset" in answer:
                    result.location = (answer.get("topic"), answer.get("partition"), answer["offset"])
            except (orjson.JSONDecodeError, AttributeError):
                result.answer = raw[:80].decode(errors="replace")
        result.latency_s = time.monotonic() - started
        return result

    async def send_new(self, http: aiohttp.ClientSession) -> Result:
        """POST a new distinct event and record it."""
        event_id, body = new_event()
        self.bodies[event_id] = body
        result = await self.post(http, event_id, body)
        self.results.append(result)
        return result

    async def open_loop(
        self, http: aiohttp.ClientSession, rate: float, duration_s: float, stop: asyncio.Event | None = None
    ) -> None:
        """Start one request every ``1/rate`` s for ``duration_s`` (or until ``stop``); wait for all."""
        interval = 1.0 / rate
        begin = time.monotonic()
        n = 0
        while time.monotonic() - begin < duration_s and not (stop is not None and stop.is_set()):
            if len(self._pending) >= self.max_in_flight:
                self.skipped += 1
            else:
                task = asyncio.create_task(self.send_new(http))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
            n += 1
            # Against the schedule, not the previous tick: no drift when the loop is busy.
            await asyncio.sleep(max(0.0, begin + n * interval - time.monotonic()))
        await self.drain()

    async def closed_loop(self, http: aiohttp.ClientSession, workers: int, duration_s: float) -> None:
        """``workers`` tasks each posting new events back to back for ``duration_s``."""
        deadline = time.monotonic() + duration_s

        async def worker() -> None:
            while time.monotonic() < deadline:
                result = await self.send_new(http)
                if result.status == ERROR:
                    await asyncio.sleep(0.05)  # do not spin on a refused connection

        await asyncio.gather(*(worker() for _ in range(workers)))

    async def drain(self) -> None:
        """Wait for every request still pending (each is bounded by ``timeout_s``)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def resend_all(self, url: str, concurrency: int = 32) -> list[Result]:
        """Re-send every body ever sent to ``url``, as Altinn's retries would; one result each."""
        limit = asyncio.Semaphore(concurrency)

        async def one(http: aiohttp.ClientSession, event_id: str, body: bytes) -> Result:
            async with limit:
                return await self.post(http, event_id, body, url)

        async with self.session() as http:
            return await asyncio.gather(*(one(http, i, b) for i, b in list(self.bodies.items())))

    # --- views of the results ---------------------------------------------------

    def ok_ids(self) -> set[str]:
        return {r.event_id for r in self.results if r.ok}

    def with_status(self, status: int | str) -> list[Result]:
        return [r for r in self.results if r.status == status]

    def statuses(self) -> Counter[int | str]:
        return Counter(r.status for r in self.results)


@dataclass
class Report:
    """The one-line summary of a scenario."""

    sent: int
    ok_2xx: int
    rejected_503: int
    errors: int
    found_in_kafka: int
    lost: int
    duplicates_in_kafka: int
    #: Ids in Kafka that were never answered 2xx (at-least-once: allowed, but worth knowing).
    found_without_2xx: int
    lost_ids: list[str]
    counts: Counter[str]
    extra: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        fields = {
            "sent": self.sent,
            "ok_2xx": self.ok_2xx,
            "rejected_503": self.rejected_503,
            "found_in_kafka": self.found_in_kafka,
            "lost": self.lost,
            "duplicates_in_kafka": self.duplicates_in_kafka,
            "errors": self.errors,
            "found_without_2xx": self.found_without_2xx,
            **self.extra,
        }
        return " ".join(f"{k}={v}" for k, v in fields.items())


#: Every scenario's line, in the order they ran; repeated in the run's summary (tests/faults/conftest.py).
REPORTED: list[str] = []


def report(load: Load, bootstrap: str, **extra: object) -> Report:
    """Read Kafka back and summarise ``load``; prints its line."""
    sent = set(load.bodies)
    ok = load.ok_ids()
    counts = ce_id_counts(bootstrap, sent)
    if ok - set(counts):
        # Before calling anything lost, read once more, more patiently.
        counts = ce_id_counts(bootstrap, sent, idle_s=3.0)
    lost_ids = sorted(ok - set(counts))
    result = Report(
        sent=len(sent),
        ok_2xx=len(ok),
        rejected_503=len({r.event_id for r in load.with_status(503)}),
        errors=len(load.with_status(ERROR)),
        found_in_kafka=len(ok & set(counts)),
        lost=len(lost_ids),
        duplicates_in_kafka=sum(n - 1 for n in counts.values() if n > 1),
        found_without_2xx=len(set(counts) - ok),
        lost_ids=lost_ids,
        counts=counts,
        extra={**({"client_skipped": load.skipped} if load.skipped else {}), **extra},
    )
    print(result.line())
    REPORTED.append(result.line())
    return result


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

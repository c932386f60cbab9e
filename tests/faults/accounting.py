"""The fault scenarios' load (bench.load, keeping every body and answer), and what Kafka says about it.

:class:`RecordingLoad` keeps every body it sent and a :class:`Result` per request;
:func:`event_load` makes one posting *distinct* valid Altinn events (the
correspondencepublished fixture with a fresh ``id`` and ``resourceinstance`` each).
:func:`report` reads the event topics back with confluent-kafka (an independent
client) and counts, over the ids the load sent, which 2xx ids are missing (lost) and
which ids are in Kafka more than once (duplicates), matching on the record header ``ce_id``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from bench.load import ERROR, Connection, Item, Load
from tests.support.events import FIXTURES
from tests.support.http import EVENTS_PATH
from tests.support.kafka import ce_id_counts

_FIXTURE = orjson.loads((FIXTURES / "valid" / "06-correspondencepublished.json").read_bytes())
#: The fixture with ``__ID__`` for its id and its resource instance: a distinct event per id.
TEMPLATE = orjson.dumps({**_FIXTURE, "id": "__ID__", "resourceinstance": "__ID__"})


@dataclass(slots=True)
class Result:
    """One request: when it was due (s since the load began), what came back, how long it took."""

    event_id: str
    started_s: float
    status: int | str
    latency_s: float
    retry_after: str | None = None
    content_type: str | None = None
    #: ``outcome`` of a 2xx answer, or the problem ``type`` of an error answer.
    answer: str | None = None
    #: ``(topic, partition, offset)`` a 2xx answer names.
    location: tuple[object, object, object] | None = None

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300


class RecordingLoad(Load):
    """A :class:`bench.load.Load` that keeps every body it sent and every answer."""

    def __init__(
        self, url: str, *, connections: int = 64, template: bytes | None = None, timeout_s: float
    ) -> None:
        super().__init__(url, connections=connections, template=template, timeout_s=timeout_s)
        self._t0 = time.monotonic()
        self.bodies: dict[str, bytes] = {}
        self.results: list[Result] = []

    def now(self) -> float:
        """Seconds since this load was created (the clock of :attr:`Result.started_s`)."""
        return time.monotonic() - self._t0

    def request(self, item: Item) -> tuple[str, bytes]:
        if item is None and self.template is not None:
            item = self.new_event()
        if item is not None:
            self.bodies[item[0]] = item[1]
        return super().request(item)

    def record(self, event_id: str, due: float, status: int | str, head: bytes, body: bytes) -> None:
        super().record(event_id, due, status, head, body)
        result = Result(event_id, due - self._t0, status, time.monotonic() - due)
        headers = dict(line.partition(":")[::2] for line in head.decode("latin-1").split("\r\n")[1:])
        headers = {name.strip().lower(): value.strip() for name, value in headers.items()}
        result.retry_after = headers.get("retry-after")
        if "content-type" in headers:
            result.content_type = headers["content-type"].split(";")[0].strip()
        try:
            answer = orjson.loads(body)
            result.answer = answer.get("outcome") or answer.get("type")
            if "offset" in answer:
                result.location = (answer.get("topic"), answer.get("partition"), answer["offset"])
        except (orjson.JSONDecodeError, AttributeError):
            result.answer = body[:80].decode(errors="replace") or None
        self.results.append(result)

    async def post_all(self, items: list[tuple[str, bytes]]) -> list[Result]:
        """POST each ``(event_id, body)`` at once (as many at a time as there are connections)."""
        first, due = len(self.results), time.monotonic()
        for item in items:
            self.submit(due, item)
        await self.drain()
        return self.results[first:]

    async def closed_loop(self, workers: int, duration_s: float) -> None:
        """``workers`` connections each posting new events back to back for ``duration_s``."""
        deadline = time.monotonic() + duration_s

        async def worker() -> None:
            connection: Connection | None = None
            while (due := time.monotonic()) < deadline:
                connection = await self.exchange(connection, None, due)
                if connection is None:
                    await asyncio.sleep(0.05)  # do not spin on a refused connection
            if connection is not None:
                connection.close()

        await asyncio.gather(*(worker() for _ in range(workers)))


def event_load(base_url: str, *, timeout_s: float = 10.0, connections: int = 200) -> RecordingLoad:
    """A load posting distinct events to a bridge's event route."""
    return RecordingLoad(
        base_url + EVENTS_PATH, connections=connections, template=TEMPLATE, timeout_s=timeout_s
    )


def with_status(load: RecordingLoad, status: int | str) -> list[Result]:
    """The requests of ``load`` answered ``status`` (or ``ERROR``)."""
    return [r for r in load.results if r.status == status]


async def resend_all(load: RecordingLoad, base_url: str, concurrency: int = 32) -> list[Result]:
    """Every body ``load`` ever sent, posted again to a bridge as Altinn's retries would; a result each."""
    again = RecordingLoad(base_url + EVENTS_PATH, connections=concurrency, timeout_s=load.timeout_s)
    return await again.post_all(list(load.bodies.items()))


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


def report(load: RecordingLoad, bootstrap: str, **extra: object) -> Report:
    """Read Kafka back and summarise ``load``; prints its line."""
    sent = set(load.bodies)
    ok = {r.event_id for r in load.results if r.ok}
    counts = ce_id_counts(bootstrap, sent)
    if ok - set(counts):
        # Before calling anything lost, read once more, more patiently.
        counts = ce_id_counts(bootstrap, sent, idle_s=3.0)
    lost_ids = sorted(ok - set(counts))
    result = Report(
        sent=len(sent),
        ok_2xx=len(ok),
        rejected_503=len({r.event_id for r in with_status(load, 503)}),
        errors=len(with_status(load, ERROR)),
        found_in_kafka=len(ok & set(counts)),
        lost=len(lost_ids),
        duplicates_in_kafka=sum(n - 1 for n in counts.values() if n > 1),
        found_without_2xx=len(set(counts) - ok),
        lost_ids=lost_ids,
        counts=counts,
        extra=extra,
    )
    print(result.line())
    REPORTED.append(result.line())
    return result

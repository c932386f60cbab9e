"""A fake :class:`bridge.publisher.Publisher`: records kept in memory, behaviour set per test.

One class for every HTTP-level test: each behaviour is off by default and a test turns on
what it needs on the ``fake_publisher`` fixture (``fake_publisher.gate = asyncio.Event()``)
before or after building its app; nothing overrides the fixture.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from bridge.errors import PublishError
from bridge.publisher import Delivery
from bridge.routing import Headers


@dataclass
class Record:
    """One record the fake publisher accepted."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


@dataclass
class FakePublisher:
    """A :class:`bridge.publisher.Publisher` that keeps records in memory.

    Publishing: ``fail_with`` makes every publish raise it; ``failing_topics`` fails
    publishes to those topics only; ``delay_s`` holds each publish; ``gate``, when given,
    holds each publish until it is set (``held`` counts the waiting ones), so a test can
    have several deliveries in flight without timing; ``time_out_first`` makes the first
    publish (not to a dedupe state topic) time out the way :class:`KafkaPublisher` does,
    raising ``PublishError("timeout")`` that carries ``late``, the record's outcome to come.

    Starting and checking: ``start_gate`` keeps ``start`` waiting until it is set;
    ``reachable`` drives ``check``; ``check_delay_s`` makes each check take that long,
    bounded like the real adapter's by its ``timeout_s``.

    Concurrency is counted: ``publishing``/``max_publishing``, ``checking``/``max_checking``.
    """

    records: list[Record] = field(default_factory=list)
    fail_with: PublishError | None = None
    failing_topics: set[str] = field(default_factory=set)
    delay_s: float = 0.0
    gate: asyncio.Event | None = None
    time_out_first: bool = False
    start_gate: asyncio.Event | None = None
    reachable: bool = True
    check_delay_s: float = 0.0

    started: bool = False
    stopped: bool = False
    checks: int = 0
    held: int = 0
    max_held: int = 0
    publishing: int = 0
    max_publishing: int = 0
    checking: int = 0
    max_checking: int = 0
    late: asyncio.Future[Delivery] | None = None
    timed_out: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)

    async def start(self) -> None:
        if self.start_gate is not None:
            await self.start_gate.wait()
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> Delivery:
        if self.time_out_first and self.late is None and not topic.endswith(".dedupe"):
            self.late = asyncio.get_running_loop().create_future()
            self.timed_out.append((topic, key, value))
            raise PublishError("timeout", "Kafka did not acknowledge in time (fake)", late=self.late)
        if self.gate is not None:
            self.held += 1
            self.max_held = max(self.max_held, self.held)
            try:
                await self.gate.wait()
            finally:
                self.held -= 1
        if topic in self.failing_topics:
            raise PublishError("NotLeaderForPartitionError", f"{topic} has no leader (fake)")
        self.publishing += 1
        self.max_publishing = max(self.max_publishing, self.publishing)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.fail_with is not None:
                raise self.fail_with
            offset = sum(1 for r in self.records if r.topic == topic)
            self.records.append(Record(topic, key, value, list(headers)))
            return Delivery(topic, 0, offset)
        finally:
            self.publishing -= 1

    def append(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers, spread: int | None = None
    ) -> tuple[asyncio.Future[Delivery], int]:
        """Each record its own batch (a task running :meth:`publish`); ``spread`` is ignored."""
        del spread
        # Shielded like KafkaPublisher's batch future: a cancelled caller does not cancel the record.
        return asyncio.shield(asyncio.ensure_future(self.publish(topic, key, value, headers))), 0

    async def check(self, timeout_s: float) -> None:
        self.checking += 1
        self.max_checking = max(self.max_checking, self.checking)
        try:
            await asyncio.sleep(min(self.check_delay_s, timeout_s))
            self.checks += 1
            if self.check_delay_s > timeout_s:
                raise PublishError("timeout", f"no broker answered within {timeout_s:g} s (fake)")
            if not self.reachable:
                raise PublishError("KafkaConnectionError", "no broker reachable (fake)")
        finally:
            self.checking -= 1


@pytest.fixture
def fake_publisher() -> FakePublisher:
    return FakePublisher()

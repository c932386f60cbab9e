"""One reconciler at a time: a Kafka consumer group over the one-partition cursor topic.

Every process that may reconcile joins the group ``<KAFKA_CLIENT_ID>-reconciler``
and subscribes to the cursor topic. The group coordinator gives its single
partition to one member; that member runs the work, the others wait. When the
holder leaves (shutdown, crash: after the session timeout) the group rebalances
and another member takes over, loading the cursor the previous one stored last.

The partition is only a token: its records are not consumed here (it is paused),
and no offsets are committed. A member whose partition is revoked stops its
work before the rebalance completes (aiokafka awaits the listener).

Not a lock with fencing: a holder cut off from Kafka keeps working until it
notices it lost the group (its heartbeats fail; at most about a session timeout).
Two reconcilers for a moment cost nothing worse than duplicate-suppressed
re-reads and a cursor that steps back: every page goes through dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from bridge.cursor_store import CursorTopicMissing
from bridge.kafka_security import client_options
from bridge.kafka_settings import KafkaSettings
from bridge.logs import get_logger

#: How often the group loop wakes up (it must poll within the rebalance timeout), in milliseconds.
_POLL_MS = 500
#: Bound on leaving the group when stopping, in seconds.
_STOP_TIMEOUT_S = 10.0

_log = get_logger("bridge.leadership")


class NotLeader(RuntimeError):
    """Another member of the group holds the cursor (one-shot runs give up then)."""


def group_id(kafka: KafkaSettings) -> str:
    """The consumer group of the reconcilers of this deployment."""
    return f"{kafka.client_id}-reconciler"


class Leadership:
    """Runs ``work`` only while this process holds the cursor partition.

    ``on_change(True/False)`` is told when this process gains or loses it.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        *,
        session_timeout_s: float,
        group: str | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._session_ms = int(session_timeout_s * 1000)
        self._group = group or group_id(kafka)
        self._on_change = on_change
        self._work: asyncio.Task[None] | None = None
        self._factory: Callable[[], Awaitable[None]] | None = None
        #: Set once the first assignment (empty or not) is known.
        self.decided = asyncio.Event()
        self.leader = False

    async def run(self, work: Callable[[], Awaitable[None]], *, give_up_if_follower: bool = False) -> None:
        """Hold the group until cancelled, running ``work`` whenever this process holds the cursor.

        Returns when ``work`` returns; re-raises what ``work`` raised. With
        ``give_up_if_follower``, raises :class:`NotLeader` as soon as the group
        gave the cursor to another member.
        """
        self._factory = work
        kafka = self._kafka
        consumer = AIOKafkaConsumer(
            bootstrap_servers=list(kafka.bootstrap_servers),
            client_id=f"{kafka.client_id}-reconciler",
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=self._session_ms,
            heartbeat_interval_ms=max(self._session_ms // 10, 100),
            rebalance_timeout_ms=self._session_ms,
            max_poll_interval_ms=max(self._session_ms, 10_000),
            request_timeout_ms=max(self._session_ms + 5000, 40_000),
            **client_options(kafka.security),
        )
        await consumer.start()
        try:
            if self._topic not in await consumer.topics():
                raise CursorTopicMissing(
                    f"reconcile cursor topic {self._topic!r} does not exist: create it with one "
                    "partition and cleanup.policy=compact"
                )
            consumer.subscribe([self._topic], listener=_Listener(self, consumer))
            while True:
                await consumer.getmany(timeout_ms=_POLL_MS)
                task = self._work
                if task is not None and task.done():
                    self._work = None
                    task.result()  # re-raises what the work raised
                    return
                if give_up_if_follower and self.decided.is_set() and not self.leader:
                    raise NotLeader(f"another member of consumer group {self._group!r} holds the cursor")
        finally:
            await self._stop_work()
            try:
                async with asyncio.timeout(_STOP_TIMEOUT_S):
                    await consumer.stop()
            except TimeoutError:
                _log.warning("leaving the reconciler group timed out", group=self._group)

    def _assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        consumer.pause(*assigned)  # a token, not a feed
        holds = TopicPartition(self._topic, 0) in assigned
        self.decided.set()
        if holds and self._work is None and self._factory is not None:
            self._set_leader(leader=True)
            self._work = asyncio.create_task(self._factory(), name="reconcile")  # type: ignore[arg-type]
        elif not holds:
            self._set_leader(leader=False)

    async def _stop_work(self) -> None:
        task, self._work = self._work, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif task is not None and not task.cancelled() and task.exception() is not None:
            # Died just as the partition went: nobody else will look at it.
            _log.error("reconciler stopped with an error", error=str(task.exception()))
        self._set_leader(leader=False)

    def _set_leader(self, *, leader: bool) -> None:
        if leader == self.leader:
            return
        self.leader = leader
        _log.info(
            "reconciler holds the cursor" if leader else "reconciler released the cursor", group=self._group
        )
        if self._on_change is not None:
            self._on_change(leader)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped in aiokafka
    def __init__(self, owner: Leadership, consumer: AIOKafkaConsumer) -> None:
        self._owner = owner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:  # noqa: ARG002
        await self._owner._stop_work()  # noqa: SLF001 - the listener is part of Leadership

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner._assigned(self._consumer, assigned)  # noqa: SLF001

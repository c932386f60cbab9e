"""Does the broker slow down as the dedupe state topic grows? ``python -m bench.broker_growth``.

The bridge's Kafka pattern without HTTP, at a fixed 2,500 events/s for 6 s:
one event record (its acknowledgement timed, as a request waits for it) and
one state record each, through the bridge's own KafkaPublisher. Four runs on one
local Tansu broker (memory storage): the state topic empty or already holding
150,000 records, and with or without a consumer following it (as every bridge
process does). Prints p50/p95/p99 of the event acknowledgement.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.config import Settings
from bridge.publisher import KafkaPublisher
from devtools.broker import create_topics, start_broker

RATE, SECONDS, PREFILL = 2500, 6, 150_000
EVENT, STATE = b"v" * 477, b"s" * 130  # the bench event's size; a state record's


async def _measure(bootstrap: str, *, prefill: int, follow: bool) -> str:
    settings = Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_ENABLE_IDEMPOTENCE": "false", "BRIDGE_AUTH": "none"}
    )
    publisher = KafkaPublisher(settings.kafka)
    await publisher.start()
    events, state = f"events-{uuid.uuid4().hex[:6]}", f"state-{uuid.uuid4().hex[:6]}"
    await create_topics(bootstrap, [events, state], 3)
    await asyncio.gather(
        *(publisher.submit(state, uuid.uuid4().hex.encode(), STATE, []) for _ in range(prefill))
    )
    consumer, following = None, None
    if follow:  # the bridge's follower settings (bridge.dedupe_store)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, fetch_min_bytes=64 * 1024, fetch_max_wait_ms=500
        )
        await consumer.start()
        partitions = [TopicPartition(state, p) for p in range(3)]
        consumer.assign(partitions)
        for tp, end in (await consumer.end_offsets(partitions)).items():
            consumer.seek(tp, end)

        async def drain() -> None:
            while True:
                await consumer.getmany(timeout_ms=2500)

        following = asyncio.create_task(drain())
    waits: list[float] = []

    async def one(n: int) -> None:
        started = time.perf_counter()
        await publisher.publish(events, str(n).encode(), EVENT, [])
        waits.append(time.perf_counter() - started)
        publisher.submit(state, uuid.uuid4().hex.encode(), STATE, [])

    start, sent = time.perf_counter(), []
    for n in range(RATE * SECONDS):
        if (due := start + n / RATE - time.perf_counter()) > 0:
            await asyncio.sleep(due)
        sent.append(asyncio.ensure_future(one(n)))
    await asyncio.gather(*sent)
    if following is not None and consumer is not None:
        following.cancel()
        await consumer.stop()
    await publisher.stop()
    waits.sort()

    def q(p: float) -> float:
        return waits[int(p * len(waits)) - 1] * 1000

    return (
        f"state topic {prefill:>7,} records, follower {'on ' if follow else 'off'}: "
        f"event ack p50 {q(0.5):.1f} ms, p95 {q(0.95):.1f} ms, p99 {q(0.99):.1f} ms"
    )


def main() -> None:
    """Print one line per run."""
    broker = start_broker(Path(tempfile.mkdtemp(prefix="broker-growth-")))
    try:
        for prefill, follow in ((0, False), (0, True), (PREFILL, False), (PREFILL, True)):
            print(asyncio.run(_measure(broker.bootstrap, prefill=prefill, follow=follow)))  # noqa: T201
    finally:
        broker.stop()


if __name__ == "__main__":
    main()

"""The Kafka side alone, no HTTP: what the client costs per record, what the broker pays.

``python -m bench.kafka_floor [RECORDS]`` starts a Tansu broker on CPU 0 and runs
this process on the last CPU, acks=all, the bridge's producer defaults otherwise.

1. Client CPU per record (this process, user + system), RECORDS copies of the
   bench's event, three ways:

   - ``send+wait``: ``send()`` per record, then await every delivery future
     (what the bridge does per event, without the request around it);
   - ``send_and_wait x64``: 64 concurrent ``send_and_wait`` loops (the naive bridge);
   - ``send_batch x100``: ``create_batch()`` batches of 100, one ``send_batch``
     each (aiokafka's bulk API).

   The batch target (50,000 events/s on one core) leaves 20 us per event for
   everything; this is how much of that the Kafka client takes by itself.

2. Broker CPU for the bridge's pattern at a fixed 1,700 events/s for 15 s: one
   event record each; plus one record to a compacted state topic (dedupe); plus
   a consumer following that topic (as every bridge process does). Shows what
   the dedupe state topic costs the broker — here Tansu, memory storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.loadgen import say
from bench.procs import Tree, cpu_affinity
from devtools.broker import create_topics, start_broker

TOPIC = "altinn.correspondence.correspondencepublished"
STATE_TOPIC = "altinn.correspondence.dedupe"
STATE_CONFIG = {"cleanup.policy": "compact,delete", "retention.ms": "259200000"}
TEMPLATE = (
    Path(__file__).resolve().parent.parent
    / "tests/fixtures/altinn-events/valid/06-correspondencepublished.json"
)
FIXTURE_ID = b"8e81973e-0bec-47b0-b898-d190f9ebdacc"
CONCURRENCY = 64
BATCH = 100
#: Events per second and seconds of part 2 (about half of what one bridge worker does here).
PATTERN_RATE = 1700.0
PATTERN_S = 15.0

T = TypeVar("T")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _values(records: int) -> list[bytes]:
    """The bench's event (compact, as Altinn sends it) with a unique id each."""
    template = json.dumps(json.loads(TEMPLATE.read_bytes()), separators=(",", ":")).encode()
    return [template.replace(FIXTURE_ID, f"{n:036d}".encode()) for n in range(records)]


async def _send_wait(producer: AIOKafkaProducer, values: list[bytes]) -> None:
    futures = [await producer.send(TOPIC, value=v, key=v[-36:]) for v in values]
    await asyncio.gather(*futures)


async def _send_and_wait(producer: AIOKafkaProducer, values: list[bytes]) -> None:
    async def worker(part: list[bytes]) -> None:
        for v in part:
            await producer.send_and_wait(TOPIC, value=v, key=v[-36:])

    await asyncio.gather(*(worker(values[i::CONCURRENCY]) for i in range(CONCURRENCY)))


async def _send_batch(producer: AIOKafkaProducer, values: list[bytes]) -> None:
    partitions = sorted(await producer.partitions_for(TOPIC))
    # One batch per partition at a time: aiokafka holds one pending batch per partition.
    step = BATCH * len(partitions)
    for start in range(0, len(values), step):
        sends = []
        for p, n in enumerate(range(start, min(start + step, len(values)), BATCH)):
            batch = producer.create_batch()
            for v in values[n : n + BATCH]:
                batch.append(key=v[-36:], value=v, timestamp=None)
            sends.append(producer.send_batch(batch, TOPIC, partition=partitions[p]))
        await asyncio.gather(*(await asyncio.gather(*sends)))


async def _client_cost(
    bootstrap: str, values: list[bytes], how: Callable[[AIOKafkaProducer, list[bytes]], Awaitable[None]]
) -> tuple[float, float]:
    """(client CPU us per record, records per second)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        await how(producer, values[: len(values) // 10])  # warm-up: connections, metadata
        cpu, wall = _cpu_s(), time.monotonic()
        await how(producer, values)
        return (_cpu_s() - cpu) / len(values) * 1e6, len(values) / (time.monotonic() - wall)
    finally:
        await producer.stop()


async def _broker_cost(bootstrap: str, broker: Tree, *, state: bool, follow: bool) -> float:
    """Broker cores used while the bridge's Kafka pattern runs at :data:`PATTERN_RATE`."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    consumer: AIOKafkaConsumer | None = None
    following: asyncio.Task[None] | None = None
    if follow:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        consumer.assign([TopicPartition(STATE_TOPIC, p) for p in range(3)])
        await consumer.seek_to_end()

        async def poll(consumer: AIOKafkaConsumer) -> None:
            while True:
                await consumer.getmany(timeout_ms=1000)

        following = asyncio.create_task(poll(consumer))
    value = _values(1)[0]

    async def event(n: int) -> None:
        key = str(n).encode()
        await producer.send_and_wait(TOPIC, value, key=key, headers=[("ce_id", key)])
        if state:
            await producer.send_and_wait(STATE_TOPIC, b"s" * 60, key=key)

    try:
        pending: set[asyncio.Task[None]] = set()
        cpu, start = broker.cpu_s(), time.monotonic()
        n = 0
        while (due := start + n / PATTERN_RATE) < start + PATTERN_S:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(event(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.gather(*pending)
        return (broker.cpu_s() - cpu) / (time.monotonic() - start)
    finally:
        if following is not None and consumer is not None:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
            await consumer.stop()
        await producer.stop()


def _run(coroutine: Awaitable[T]) -> T:
    """Run on uvloop when installed, as the bridge does."""
    try:
        import uvloop  # noqa: PLC0415 - optional

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None

    async def main() -> T:
        return await coroutine

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def main() -> int:
    """Start a broker per measurement, print the costs."""
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    last = (os.cpu_count() or 1) - 1
    values = _values(records)
    say(f"1. Client CPU per record ({records:,} records of {len(values[0])} bytes, acks=all):")
    ways = (
        ("send+wait", _send_wait),
        ("send_and_wait x64", _send_and_wait),
        ("send_batch x100", _send_batch),
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, how in ways:
            with cpu_affinity({0}):
                broker = start_broker(Path(tmp))
            try:
                _run(create_topics(broker.bootstrap, [TOPIC], 3))
                with cpu_affinity({last}):
                    us, rate = _run(_client_cost(broker.bootstrap, values, how))
                say(f"   {name:<18} {us:6.1f} us CPU per record, {rate:9,.0f} records/s")
            finally:
                broker.stop()
        say(f"2. Broker CPU at {PATTERN_RATE:,.0f} events/s for {PATTERN_S:g} s (Tansu, memory storage):")
        patterns = (
            ("event records only", False, False),
            ("+ a state record per event", True, False),
            ("+ a consumer following the state topic", True, True),
        )
        for name, state, follow in patterns:
            with cpu_affinity({0}):
                broker = start_broker(Path(tmp))
            try:
                _run(create_topics(broker.bootstrap, [TOPIC, STATE_TOPIC], 3, {STATE_TOPIC: STATE_CONFIG}))
                assert broker.process is not None  # noqa: S101 - started
                tree = Tree("tansu", broker.process, broker.log_path)
                with cpu_affinity({last}):
                    cores = _run(_broker_cost(broker.bootstrap, tree, state=state, follow=follow))
                say(f"   {name:<40} broker {cores:.2f} cores")
            finally:
                broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

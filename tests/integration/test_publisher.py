"""KafkaPublisher against the real broker: batches built by the bridge, read back with confluent-kafka.

The publisher gathers concurrent records into one batch per partition and hands
it to aiokafka's bulk API, so it computes each record's partition and offset
itself. These tests check both against an independent client: where
confluent-kafka finds each record, and where librdkafka's Java-compatible
``murmur2`` partitioner puts the same keys.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from confluent_kafka import Producer

from bridge.publisher import Delivery, KafkaPublisher
from devtools.broker import create_topics
from devtools.show_topic import read_topics
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration


def _publisher(bootstrap: str, **env: str) -> KafkaPublisher:
    # Tansu has no idempotent producer (real Kafka keeps the default, true).
    settings = make_settings(KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_ENABLE_IDEMPOTENCE="false", **env)
    return KafkaPublisher(settings.kafka)


async def _publish_all(
    publisher: KafkaPublisher, topic: str, records: list[tuple[bytes, bytes]]
) -> list[Delivery]:
    return await asyncio.gather(
        *(
            publisher.publish(topic, key, value, [("n", str(i).encode())])
            for i, (key, value) in enumerate(records)
        )
    )


def _murmur2_partitions(bootstrap: str, topic: str, keys: list[bytes]) -> dict[bytes, int]:
    """Where librdkafka's ``murmur2`` (the Java client's partitioner) puts each key."""
    placed: dict[bytes, int] = {}

    def report(err: object, msg: object) -> None:
        assert err is None, err
        placed[msg.key()] = msg.partition()  # type: ignore[attr-defined]

    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2"})
    for key in keys:
        producer.produce(topic, value=b"probe", key=key, on_delivery=report)
    assert producer.flush(30) == 0
    return placed


async def test_concurrent_records_land_where_the_publisher_says(kafka_bootstrap):
    topic = f"publisher-{uuid.uuid4().hex[:8]}"
    probe = topic + "-probe"
    await create_topics(kafka_bootstrap, [topic, probe], partitions=3)
    records = [(f"key-{i}".encode(), f"value-{i}-{uuid.uuid4()}".encode()) for i in range(400)]
    # Batches of at most 2 KiB: 400 records need well over a hundred of them.
    publisher = _publisher(kafka_bootstrap, KAFKA_MAX_BATCH_BYTES="2048")
    await publisher.start()
    try:
        deliveries = await _publish_all(publisher, topic, records)
    finally:
        await publisher.stop()

    landed = {(r["partition"], r["offset"]): r for r in read_topics(kafka_bootstrap, [topic])}
    assert len(landed) == len(records)
    for i, ((key, value), delivery) in enumerate(zip(records, deliveries, strict=True)):
        record = landed[delivery.partition, delivery.offset]
        assert (delivery.topic, record["key"], record["value"]) == (topic, key, value)
        assert record["headers"] == {"n": str(i).encode()}
    expected = _murmur2_partitions(kafka_bootstrap, probe, [key for key, _ in records])
    assert {key: d.partition for (key, _), d in zip(records, deliveries, strict=True)} == expected
    assert len({d.partition for d in deliveries}) == 3


async def test_keyless_and_oversized_records_are_published(kafka_bootstrap):
    topic = f"publisher-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka_bootstrap, [topic], partitions=3)
    big = b"x" * 5000  # larger than a whole batch: it gets a batch of its own
    publisher = _publisher(kafka_bootstrap, KAFKA_MAX_BATCH_BYTES="2048")
    await publisher.start()
    try:
        deliveries = await asyncio.gather(
            publisher.publish(topic, None, b"no key", []),
            publisher.publish(topic, b"k", big, []),
            publisher.publish(topic, b"k", b"after the big one", []),
        )
    finally:
        await publisher.stop()
    landed = {(r["partition"], r["offset"]): r["value"] for r in read_topics(kafka_bootstrap, [topic])}
    assert [landed[d.partition, d.offset] for d in deliveries] == [b"no key", big, b"after the big one"]


async def test_records_appended_in_one_pass_share_their_batch_future_and_land_in_order(kafka_bootstrap):
    topic = f"publisher-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka_bootstrap, [topic], partitions=1)
    publisher = _publisher(kafka_bootstrap)
    await publisher.start()
    try:
        await publisher.publish(topic, b"warm-up", b"0", [])  # the partition lookup happens once, here
        slots = [publisher.append(topic, b"k", f"v{i}".encode(), []) for i in range(5)]
        futures = {id(future) for future, _ in slots}
        first = await slots[0][0]
    finally:
        await publisher.stop()

    assert len(futures) == 1, "one future for the whole Kafka batch, not one per record"
    assert [index for _, index in slots] == [0, 1, 2, 3, 4]
    landed = {r["offset"]: r["value"] for r in read_topics(kafka_bootstrap, [topic])}
    assert [landed[first.offset + i] for i in range(5)] == [f"v{i}".encode() for i in range(5)]


async def test_a_cancelled_caller_does_not_cancel_the_batch_for_the_others(kafka_bootstrap):
    topic = f"publisher-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka_bootstrap, [topic], partitions=1)
    publisher = _publisher(kafka_bootstrap)
    await publisher.start()
    try:
        await publisher.publish(topic, b"warm-up", b"0", [])
        (future, _), (same, second) = (publisher.append(topic, b"k", v, []) for v in (b"a", b"b"))

        async def wait(f: asyncio.Future[Delivery]) -> Delivery:
            return await f

        cancelled = asyncio.ensure_future(wait(future))
        other = asyncio.ensure_future(wait(same))
        await asyncio.sleep(0)  # both wait on the batch now
        cancelled.cancel()
        delivery = await other
    finally:
        await publisher.stop()

    assert same is future
    assert not future.cancelled()
    with pytest.raises(asyncio.CancelledError):
        await cancelled  # the cancelled waiter ends once the batch is answered
    landed = {r["offset"]: r["value"] for r in read_topics(kafka_bootstrap, [topic])}
    assert landed[delivery.offset + second] == b"b"

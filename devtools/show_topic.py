"""Print every record of a topic (key, headers, value), read with confluent-kafka,
an independent client: ``python -m devtools.show_topic --bootstrap HOST:PORT TOPIC``."""

from __future__ import annotations

import argparse
import sys

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


def read_topic(bootstrap: str, topic: str, timeout_s: float = 5.0) -> list[dict[str, object]]:
    """All records currently in ``topic``, in partition then offset order. No consumer group."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "unused-no-commit",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {}
        for p in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            ends[p] = high
        wanted = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions if ends[p] > 0]
        records: list[dict[str, object]] = []
        if not wanted:
            return records
        consumer.assign(wanted)
        remaining = {tp.partition for tp in wanted}
        while remaining:
            msg = consumer.poll(timeout_s)
            if msg is None:
                raise TimeoutError(f"no record within {timeout_s} s; still waiting on {remaining}")
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF  # noqa: PLR2004
                    remaining.discard(msg.partition())
                    continue
                raise RuntimeError(str(msg.error()))
            records.append({
                "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                "key": msg.key(), "headers": list(msg.headers() or []), "value": msg.value(),
            })
            if msg.offset() + 1 >= ends[msg.partition()]:
                remaining.discard(msg.partition())
        return sorted(records, key=lambda r: (r["partition"], r["offset"]))  # type: ignore[arg-type,return-value]
    finally:
        consumer.close()


def main() -> int:
    """CLI entry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("topic")
    args = parser.parse_args()
    records = read_topic(args.bootstrap, args.topic)
    for r in records:
        headers = {k: (v.decode() if v else v) for k, v in r["headers"]}  # type: ignore[attr-defined]
        key = r["key"].decode() if r["key"] else None  # type: ignore[attr-defined]
        print(f"--- {r['topic']}[{r['partition']}]@{r['offset']} key={key}")
        print(f"    headers: {headers}")
        print(f"    value:   {r['value'].decode(errors='replace')}")  # type: ignore[attr-defined]
    print(f"{len(records)} record(s) in {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print every record of some topics (key, headers, value), read with
confluent-kafka, an independent client:
``python -m devtools.show_topic --bootstrap HOST:PORT TOPIC [TOPIC ...]``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


def read_topics(
    bootstrap: str,
    topics: list[str],
    *,
    idle_s: float = 1.0,
    max_s: float = 30.0,
    extra: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """All records in ``topics`` (missing topics are skipped), read from the beginning
    with ``assign()`` (no consumer group), until nothing new arrives for ``idle_s``.

    ``extra`` adds librdkafka settings (e.g. ``security.protocol``, ``ssl.*``).
    Not watermark-based: Tansu on S3 storage reports wrong high watermarks
    (e.g. 3 for a partition holding 50 records) while the records are all there.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused-no-commit",
            "enable.auto.commit": False,
            **(extra or {}),
        }
    )
    records: list[dict[str, Any]] = []
    try:
        metadata = consumer.list_topics(timeout=10)
        wanted = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in topics
            if t in metadata.topics
            for p in metadata.topics[t].partitions
        ]
        if not wanted:
            return records
        consumer.assign(wanted)
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            msg = consumer.poll(idle_s)
            if msg is None:
                break
            if msg.error():
                raise RuntimeError(str(msg.error()))
            records.append(
                {
                    "topic": msg.topic(),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": msg.key(),
                    "headers": dict(msg.headers() or []),
                    "value": msg.value(),
                }
            )
    finally:
        consumer.close()
    return sorted(records, key=lambda r: (r["topic"], r["partition"], r["offset"]))


def main() -> int:
    """CLI entry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("topics", nargs="+")
    args = parser.parse_args()
    records = read_topics(args.bootstrap, args.topics)
    for r in records:
        headers = {k: v.decode(errors="replace") if v else v for k, v in r["headers"].items()}
        key = r["key"].decode(errors="replace") if r["key"] else None
        print(f"--- {r['topic']}[{r['partition']}]@{r['offset']} key={key}")
        print(f"    headers: {headers}")
        print(f"    value:   {r['value'].decode(errors='replace')}")
    print(f"{len(records)} record(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Example consumer of the bridge's topics (aiokafka): what docs/consumers.md describes, runnable.

    python examples/consumer.py --bootstrap kafka:9092 --group my-team

It reads the Correspondence event topics in a consumer group, handles each event once even when
Kafka holds it twice (the bridge delivers at least once), and commits offsets only after the
events are handled, so a crash means re-reading, never losing. One JSON line per event on stdout.

Replace ``handle`` with your own logic, and the in-memory ``SeenIds`` with something that survives
restarts and is shared by your replicas (a unique constraint on the event's ``(source, id)`` in
your database, written in the same transaction as the effect of the event).

Both of the bridge's record modes are read (docs/consumers.md, "Records"): *structured*, the
default, where the value is the CloudEvent JSON and ``content-type`` is
``application/cloudevents+json``; and *binary* (``BRIDGE_RECORD_MODE=binary``), where every
attribute is a ``ce_<name>`` header and the value is the event's ``data`` (empty for Altinn's
events). A CloudEvents SDK does the same (``from_kafka_event`` in the Python ``cloudevents``
package); this example needs none.

Needs only ``aiokafka`` (``pip install aiokafka``); ``--from-beginning``, ``--max-events`` and
``--idle-exit-s`` exist for trying it out and for the bridge's own tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord

#: Structured mode's media type (the Kafka binding's ``content-type``, before any parameters).
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

#: The 18 Correspondence event types Altinn emits today, and the topic for types the bridge does
#: not know yet. Topic = ``<prefix>.<name>``; the prefix is the bridge's BRIDGE_TOPIC_PREFIX.
EVENT_TOPIC_NAMES = (
    "correspondenceinitialized",
    "correspondencepublished",
    "correspondencepublishfailed",
    "correspondencepurged",
    "correspondencereceiverread",
    "correspondencereceiverconfirmed",
    "correspondencereceiverneverread",
    "correspondencereceiverneverconfirmed",
    "attachmentinitialized",
    "attachmentpublished",
    "attachmentuploadfailed",
    "attachmentexpired",
    "notificationcreated",
    "correspondencenotificationcreationfailed",
    "correspondencenotificationfailed",
    "correspondencenotificationallfailed",
    "correspondencenotificationdelivered",
    "correspondencenotificationreminderdelivered",
    "unknown",
)


class NotACloudEvent(ValueError):
    """A record in neither record mode: no structured ``content-type``, no ``ce_specversion``."""


@dataclass(frozen=True)
class Event:
    """What a consumer needs from one record: where it was, its key, and the CloudEvent's attributes."""

    topic: str
    partition: int
    offset: int
    key: str
    #: ``id``, ``source``, ``type``, ``time``, ``resource``, ``resourceinstance``, ``subject``, …
    #: (strings, as the bridge received them), and ``data`` when the event had any.
    attributes: dict[str, object]

    @property
    def id(self) -> str:
        """The event's ``id``: with ``source``, what identifies it across redeliveries."""
        return str(self.attributes["id"])

    @property
    def source(self) -> str:
        """The event's ``source`` (which Altinn environment and API)."""
        return str(self.attributes["source"])

    @property
    def type(self) -> str:
        """The event's ``type``, as sent (compare case-insensitively)."""
        return str(self.attributes["type"])

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> Event:
        """Read a record in either mode; the ``content-type`` header says which.

        Structured: the value is the whole event (any ``ce_`` headers beside it, with
        ``BRIDGE_RECORD_CE_HEADERS=on``, repeat what the value says). Binary: the attributes are
        the ``ce_`` headers, and the value is ``data`` (usually empty).
        """
        headers = {name.lower(): (value or b"").decode() for name, value in record.headers}
        content_type = headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() == STRUCTURED_CONTENT_TYPE:
            attributes = json.loads(record.value)
        elif "ce_specversion" in headers:
            attributes = {name[3:]: value for name, value in headers.items() if name.startswith("ce_")}
            if content_type:
                attributes["datacontenttype"] = content_type
            if record.value:
                attributes["data"] = record.value.decode(errors="replace")
        else:
            raise NotACloudEvent(f"{record.topic}/{record.partition}@{record.offset}")
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode() if record.key is not None else "",
            attributes=attributes,
        )


class SeenIds:
    """The (source, id) pairs handled recently, oldest forgotten first.

    In memory for the example only: use your database in production (see the module docstring).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._capacity = capacity

    def first_time(self, event: Event) -> bool:
        """True the first time an event is seen; remembers it."""
        key = (event.source, event.id)
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True


def handle(event: Event) -> dict[str, object]:
    """Your business logic. Events carry no data: fetch the correspondence from Altinn when needed.

    Decide from the event's ``type`` and ``time``, never from the order events arrive in: Altinn
    guarantees none, and different types are different topics.
    """
    return {
        "event": "handled",
        "type": event.type.lower().removeprefix("no.altinn.correspondence."),
        "id": event.id,
        "resourceinstance": event.key,
        "time": event.attributes.get("time"),
        "topic": event.topic,
        "partition": event.partition,
        "offset": event.offset,
    }


async def consume(args: argparse.Namespace) -> int:
    """Consume until interrupted (or until ``--max-events`` / ``--idle-exit-s``)."""
    topics = args.topics or [f"{args.topic_prefix}.{name}" for name in EVENT_TOPIC_NAMES]
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        client_id="altinn-events-example-consumer",
        enable_auto_commit=False,  # commit after handling: at least once, never lost
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=max(100, args.session_timeout_ms // 10),
        rebalance_timeout_ms=args.session_timeout_ms,
    )
    seen = SeenIds()
    handled = 0
    await consumer.start()
    try:
        while args.max_events is None or handled < args.max_events:
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches and args.idle_exit_s is not None:
                args.idle_exit_s -= 1
                if args.idle_exit_s <= 0:
                    break
            for records in batches.values():
                for record in records:
                    try:
                        event = Event.from_record(record)
                    except NotACloudEvent as error:  # not the bridge's: log it, do not stop on it
                        print(
                            json.dumps({"event": "not a CloudEvent, skipped", "record": str(error)}),
                            flush=True,
                        )
                        continue
                    if seen.first_time(event):
                        print(json.dumps(handle(event)), flush=True)
                        handled += 1
                    else:
                        print(json.dumps({"event": "duplicate skipped", "id": event.id}), flush=True)
            if batches:
                await consumer.commit()
    finally:
        await asyncio.wait_for(consumer.stop(), timeout=10)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port[,host:port]")
    parser.add_argument("--group", default="altinn-events-example", help="consumer group id")
    parser.add_argument(
        "--topic-prefix", default="altinn.correspondence", help="the bridge's BRIDGE_TOPIC_PREFIX"
    )
    parser.add_argument(
        "--topic", dest="topics", action="append", help="a topic to read (repeatable); default: all"
    )
    parser.add_argument(
        "--from-beginning", action="store_true", help="a new group starts at the oldest record"
    )
    parser.add_argument("--max-events", type=int, help="stop after handling this many events")
    parser.add_argument("--idle-exit-s", type=int, help="stop after this many seconds without a record")
    parser.add_argument(
        "--session-timeout-ms", type=int, default=10_000, help="consumer group session timeout"
    )
    return asyncio.run(consume(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

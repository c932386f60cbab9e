"""Duplicate suppression on (``source``, ``id``). Pure: no framework imports.

Altinn delivers at least once: the same event (same ``source`` + ``id``) can
arrive again after a lost acknowledgement, and is retried for ~35 h after a
failure. The rules, in the order a delivery meets them:

- A key already published within the window is a duplicate: answered 2xx with
  where the first copy went, not published again.
- A key whose first delivery is still being published is *reserved*: the
  duplicate waits for that delivery's outcome instead of publishing in parallel.
- A key is committed only after Kafka acknowledged the record. If the publish
  fails the reservation is released, so the sender's retry publishes.

:class:`Dedupe` holds the window in memory, bounded by a maximum entry count
(oldest evicted first) and by age. Persisting and sharing it between replicas
is :mod:`bridge.dedupe_store`'s job.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final, NamedTuple

import orjson

from bridge.window import Window

#: Header of a dedupe state record naming the process that wrote it (random per start), so that a
#: follower skips its own records instead of decoding what its window has already.
ORIGIN_HEADER: Final = "origin"
#: No entry in the pending table (None there means reserved, its record not yet appended).
_FREE: Final = object()
#: Keys of deliveries that failed, remembered only to count sender retries.
_FAILED_MEMORY: Final = 10_000


def dedupe_key(source: str, event_id: str) -> bytes:
    """The 16-byte key of an event: BLAKE2b of ``source`` and ``id``.

    Fixed size whatever is sent (ids can be long), and the state topic's record
    key is its hex form. ``source`` is length-prefixed, so no choice of
    characters makes two pairs hash the same input; collisions are out of
    reach (2**-64 at 2**32 keys).
    """
    encoded = source.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(digest_size=16)
    digest.update(len(encoded).to_bytes(8, "big"))
    digest.update(encoded)
    digest.update(event_id.encode("utf-8", "surrogatepass"))
    return digest.digest()


class Seen(NamedTuple):
    """A published event: when it was committed (epoch s) and where it went."""

    at: float
    topic: str
    partition: int
    offset: int

    def encode(self, event_id: str) -> bytes:
        """The state topic record value."""
        return orjson.dumps(
            {
                "id": event_id,
                "at": self.at,
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
            }
        )

    @classmethod
    def decode(cls, value: bytes) -> Seen:
        """Parse a state topic record value; ``ValueError`` if it is not one."""
        try:
            data = orjson.loads(value)
            topic = data["topic"]
            seen = cls(float(data["at"]), topic, int(data["partition"]), int(data["offset"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a dedupe state record: {exc}") from None
        if not isinstance(topic, str) or not topic:
            raise ValueError("not a dedupe state record: 'topic' must be a non-empty string")
        return seen


def unrecorded_ranges(offsets: Iterable[int]) -> list[tuple[int, int | None]]:
    """The offset ranges ``[start, stop)`` of a partition that no state record covers.

    From the lowest recorded offset on: the gaps between recorded offsets, then
    everything after the highest (``stop`` None). The bridge writes a state record
    for every event it publishes, so a gap holds events whose record was never
    written — a bridge killed between the two writes — and is read at start-up.
    """
    ordered = sorted(set(offsets))
    if not ordered:
        raise ValueError("no recorded offsets")
    ranges: list[tuple[int, int | None]] = [
        (low + 1, high) for low, high in itertools.pairwise(ordered) if high > low + 1
    ]
    ranges.append((ordered[-1] + 1, None))
    return ranges


class Claimed(NamedTuple):
    """What :meth:`Dedupe.claim` decided.

    Exactly one of: ``seen`` (a duplicate of a published event), ``wait`` (the
    first delivery is in flight: what its owner :meth:`~Dedupe.hold` s, the record's
    place in its Kafka batch), or neither (the caller owns the key, holds it with its
    record's place and must :meth:`Dedupe.commit` or :meth:`Dedupe.release` it).
    ``previous`` names what a redelivery met (``published``, ``in_flight``,
    ``failed``), or is None for a first delivery.
    """

    seen: Seen | None = None
    wait: object | None = None
    previous: str | None = None


class Dedupe:
    """The window of published keys plus the reservations of keys in flight."""

    def __init__(self, window_s: float, max_entries: int, clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._clock = clock
        #: Published keys, oldest first, in flat arrays (:mod:`bridge.window`): ~71 bytes per key
        #: and no Python object per key, so a full window neither costs ~375 bytes of RSS per key
        #: (the OrderedDict it replaced) nor lengthens the garbage collector's full passes.
        self._window = Window(max_entries, window_s, clock)
        #: Keys in flight: what their owner holds (None until it appended its record).
        self._pending: dict[bytes, object | None] = {}
        self._failed: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._window)

    def lookup(self, key: bytes) -> Seen | None:
        """The published entry for ``key`` if it is within the window."""
        entry = self._window.get(key, self._clock())
        return None if entry is None else Seen(*entry)

    def claim(self, key: bytes, topic: str | None = None) -> Claimed:
        """Decide what a delivery of ``key`` does; reserves the key for a first delivery.

        With ``topic`` (where the event is routed now), a key published to another topic
        is not a duplicate: an event first parked on the unknown-type topic, say, and
        redriven once its type got a route, is published there too.
        """
        seen = self.lookup(key)
        if seen is not None and (topic is None or seen.topic == topic):
            return Claimed(seen, None, "published")
        pending = self._pending.get(key, _FREE)
        if pending is not _FREE:
            return Claimed(None, pending, "in_flight")
        self._pending[key] = None
        if seen is not None:
            return Claimed(None, None, "published")
        return Claimed(None, None, "failed" if key in self._failed else None)

    def hold(self, key: bytes, place: object) -> None:
        """The owner of ``key`` appended its record: duplicates meanwhile wait for ``place``."""
        self._pending[key] = place

    def commit(self, key: bytes, seen: Seen) -> None:
        """Kafka acknowledged the owner's record: remember it; the key is no longer in flight."""
        self._failed.pop(key, None)
        self.remember(key, seen, replace=True)
        self._pending.pop(key, None)

    def release(self, key: bytes) -> None:
        """The owner's publish failed: forget the reservation so a retry publishes."""
        self._failed[key] = None
        self._failed.move_to_end(key)
        if len(self._failed) > _FAILED_MEMORY:
            self._failed.popitem(last=False)
        self._pending.pop(key, None)

    def remember(self, key: bytes, seen: Seen, *, replace: bool = False) -> None:
        """Add a published key (ours, or learnt from the state topic), newest last.

        A key already in the window keeps its first entry, unless ``replace`` (our new
        publish of it) or the entry is a later publish to another topic (another process
        redrove it). Entries past the window or beyond ``max_entries`` are evicted, oldest
        first, and counted (:meth:`take_evictions`).
        """
        now = self._clock()
        if seen.at < now - self.window_s:
            return
        if not replace:
            known = self._window.get(key, now)
            if known is not None and (known[1] == seen.topic or seen.at < known[0]):
                return
        self._window.put(key, seen.at, seen.topic, seen.partition, seen.offset, now=now)

    def take_evictions(self) -> tuple[int, int]:
        """Entries expired and evicted because the window was full since the last call (for metrics)."""
        return self._window.take_evictions()

"""A compact window of published keys in flat arrays. Pure: stdlib only.

What :class:`bridge.dedupe.Dedupe` remembers about each published event — its
16-byte key and where it went (``at``, ``topic``, ``partition``, ``offset``) —
for up to ``max_entries`` keys and ``window_s`` seconds. An ``OrderedDict`` of
bytes keys and tuples costs ~285 bytes of RSS per key when first filled and
~360 once keys have passed through it; this reserves 71 and holds no Python
object per key, so the garbage collector never walks it
(``python -m devtools.dedupe_memory --rss``).

The arrays live in one anonymous private ``mmap`` reserved at construction
(:attr:`Window.nbytes`, 34 MiB for 500,000 keys) and read through typed
``memoryview`` casts. The kernel hands out its pages zeroed on first touch, so
construction costs neither time nor memory whatever ``max_entries`` is: RSS
grows as the window fills, up to ``nbytes`` once the ring has gone round once,
and stays there however many keys pass through it (in 4 KiB pages: the mapping
opts out of transparent huge pages, which would back 2 MiB of a sparse index per
key). It is unmapped when the window is garbage-collected (tracemalloc does not
see it; RSS does). A reservation the kernel refuses (beyond what it will
overcommit) raises ``OSError`` at construction.

Two parts, both laid out in that mapping (every part starts on a page):

- The entries, in a ring in insertion order (oldest at ``head``): a 30-byte
  record (key, offset, partition, and a topic index into a small table of
  names) packed with one ``struct`` call, ``at`` (for the expiry check at the
  oldest end), and the index slot that points back at the entry.
  ``max_entries + max_entries // 8 + 1`` positions: a replaced key leaves a dead
  position behind until it reaches the oldest end.
- The index: open addressing with linear probing over ``3 * max_entries + 1``
  slots (load factor at most 1/3), each a 30-bit fingerprint of the key (0 marks
  an empty slot, so the zeroed pages are an empty index) and the key's ring
  position. Deleting a slot shifts the rest of its cluster back (no tombstones),
  so the table never degrades.

Every operation is O(1): a probe (~1.3 slots per hit, ~1.6 per miss at this
load), and per insert one eviction per expired or surplus entry.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable, Iterator
from struct import Struct
from typing import Final

#: Bytes of a key (a 16-byte BLAKE2b digest, :func:`bridge.dedupe.dedupe_key`).
KEY_SIZE: Final = 16
#: Index slots per entry: the load factor stays at or below 1/3, where linear probing
#: is short enough for a pure-Python loop (each slot costs 8 bytes; at 2 slots per
#: entry a full window's put costs ~10 % more).
SLOTS_PER_ENTRY: Final = 3
#: The ring has ``max_entries // SPARE_DIVISOR + 1`` positions beyond ``max_entries``
#: for the dead positions replaced keys leave behind.
SPARE_DIVISOR: Final = 8
#: Distinct topic names the window can hold at once (a 16-bit index; 0 marks none).
MAX_TOPICS: Final = 0xFFFF
#: The largest window: index slots and ring positions must fit 32 bits.
MAX_ENTRIES: Final = 1_000_000_000

#: A ring record: key, offset (int64), partition (int32), topic index (uint16), unpadded.
_RECORD: Final = Struct("<16sqiH")
_RECORD_SIZE: Final = _RECORD.size
_pack = _RECORD.pack_into
_unpack = _RECORD.unpack_from
#: Fingerprints are 30 bits of the key's hash, 0 made 1 (0 marks an empty index slot):
#: single-digit Python ints, whose arithmetic is the cheapest.
_FINGERPRINT_BITS: Final = 0x3FFFFFFF
#: The back-pointer of a ring position that holds no live entry.
_DEAD: Final = 0xFFFFFFFF

#: A window entry: ``(at, topic, partition, offset)``, :class:`bridge.dedupe.Seen`'s fields.
Entry = tuple[float, str, int, int]


def _fingerprint(key: bytes) -> int:
    # Python's hash of bytes is SipHash with a per-process random seed: no sender can
    # choose event ids that pile up in one cluster; the hash is cached on the key object.
    return hash(key) & _FINGERPRINT_BITS or 1


class Window:
    """Published keys and where they went, bounded by count and by age.

    ``put`` stores a key as the newest entry (replacing the entry it had). First
    it evicts, from the oldest end, every entry older than ``window_s`` (counted
    *expired*); then, if the key is new and the window holds ``max_entries``,
    the oldest entry (counted *full*). Insertion order is close to time order;
    an entry that arrived out of order and expired behind a younger one is
    ignored by ``get`` and evicted when it reaches the oldest end.

    A replaced key's old ring position stays, dead, until it reaches the oldest
    end; should ``max_entries // 8 + 1`` of them pile up at once, ``put`` evicts
    the oldest entry to make room (counted *full*), so the window may then hold
    fewer than ``max_entries``.

    ``now`` defaults to ``clock()`` (epoch seconds). Partitions must fit 32 bits
    signed and offsets 64 bits signed (Kafka's own types), else ``struct.error``;
    at most :data:`MAX_TOPICS` distinct topics may be stored at once
    (``ValueError`` beyond; names no stored entry uses are forgotten to make room).
    """

    __slots__ = (
        "_at",
        "_clock",
        "_count",
        "_entry",
        "_expired",
        "_fingerprint",
        "_free_topics",
        "_full",
        "_head",
        "_positions",
        "_records",
        "_slot",
        "_topic_ids",
        "_topic_names",
        "_used",
        "max_entries",
        "slots",
        "window_s",
    )

    def __init__(self, max_entries: int, window_s: float, clock: Callable[[], float] = time.time) -> None:
        if not 1 <= max_entries <= MAX_ENTRIES:
            raise ValueError(f"max_entries must be 1 to {MAX_ENTRIES}, not {max_entries}")
        self.max_entries = max_entries
        self.window_s = window_s
        self._clock = clock
        #: Index slots: a fingerprint and the ring position of the key.
        self.slots = slots = SLOTS_PER_ENTRY * max_entries + 1
        # The ring: positions head, head + 1, … (mod _positions), _used of them, oldest first.
        self._positions = positions = max_entries + max_entries // SPARE_DIVISOR + 1
        # One mapping, records first: the mmap object itself is the records' buffer (its
        # slices are bytes, the cheapest key comparison), then the typed parts, each on a page.
        parts = ((_RECORD_SIZE, positions), (8, positions), (4, slots), (4, slots), (4, positions))
        starts = []
        size = 0
        for itemsize, count in parts:
            starts.append(size)
            size += -(-itemsize * count // mmap.PAGESIZE) * mmap.PAGESIZE
        #: The mapping, zero-filled by the kernel on first touch; unmapped with the last view.
        self._records = records = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):  # Linux
            # Where transparent huge pages are "always", one key would back 2 MiB of the index.
            records.madvise(mmap.MADV_NOHUGEPAGE)
        view = memoryview(records)
        self._at = view[starts[1] : starts[2]].cast("d")
        self._fingerprint = view[starts[2] : starts[3]].cast("I")
        self._entry = view[starts[3] : starts[4]].cast("I")
        #: The index slot of each ring position's key; _DEAD if its key was replaced. Only
        #: positions in the ring are read, and each is written as it joins: those never used
        #: are 0, those that left hold stale values.
        self._slot = view[starts[4] :].cast("I")
        self._head = 0
        self._used = 0
        #: Live entries. Invariant: the head position is live unless the ring is empty.
        self._count = 0
        #: Topic index 0 means no topic; names are interned on first use.
        self._topic_names: list[str] = [""]
        self._topic_ids: dict[str, int] = {}
        #: Indices freed by :meth:`_reclaim_topics`, once all of them have been handed out.
        self._free_topics: list[int] = []
        self._expired = 0
        self._full = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes reserved for the window's arrays at construction (fixed; RSS grows up to it)."""
        return len(self._records)

    def home(self, key: bytes) -> int:
        """The index slot where the probe for ``key`` starts (for tests and diagnostics)."""
        return _fingerprint(key) % self.slots

    def get(self, key: bytes, now: float | None = None) -> Entry | None:
        """The entry of ``key``, or None if it is absent or older than ``window_s``."""
        wanted = hash(key) & _FINGERPRINT_BITS or 1
        fingerprints = self._fingerprint
        slots = self.slots
        slot = wanted % slots
        while True:
            found = fingerprints[slot]
            if found == wanted:
                position = self._entry[slot]
                stored, offset, partition, topic_id = _unpack(self._records, position * _RECORD_SIZE)
                if stored == key:
                    at = self._at[position]
                    if at < (self._clock() if now is None else now) - self.window_s:
                        return None
                    return (at, self._topic_names[topic_id], partition, offset)
            elif not found:
                return None
            slot += 1
            if slot == slots:
                slot = 0

    def put(
        self, key: bytes, at: float, topic: str, partition: int, offset: int, *, now: float | None = None
    ) -> None:
        """Store ``key`` as the newest entry, replacing any entry it had; evict what is due."""
        if len(key) != KEY_SIZE:
            raise ValueError(f"a window key is {KEY_SIZE} bytes, not {len(key)}")
        topic_id = self._topic_ids.get(topic) or self._intern(topic)
        ats = self._at
        horizon = (self._clock() if now is None else now) - self.window_s
        # (An empty ring's head holds a stale time; _make_room checks the count.)
        if ats[self._head] < horizon or self._used == self._positions:
            self._make_room(horizon)
        # The position after the newest is free, and stays where it is while entries are
        # evicted from the other end: fill it first, so a bad value changes nothing else.
        position = self._head + self._used
        if position >= self._positions:
            position -= self._positions
        records = self._records
        _pack(records, position * _RECORD_SIZE, key, offset, partition, topic_id)
        ats[position] = at
        # Find the key's index slot, or the empty one that ends its probe.
        wanted = hash(key) & _FINGERPRINT_BITS or 1
        fingerprints, entries = self._fingerprint, self._entry
        slots = self.slots
        home = slot = wanted % slots
        while True:
            found = fingerprints[slot]
            if found == wanted:
                old = entries[slot]
                start = old * _RECORD_SIZE
                if records[start : start + KEY_SIZE] == key:
                    self._retire(old)
                    break
            elif not found:
                if self._count == self.max_entries:
                    # Deleting empties one index slot of a cluster; if it lies on this key's
                    # probe (between home and the empty slot found), the key belongs there.
                    freed = self._drop_oldest()
                    self._full += 1
                    slot = freed if (freed - home) % slots < (slot - home) % slots else slot
                fingerprints[slot] = wanted
                self._count += 1
                break
            slot += 1
            if slot == slots:
                slot = 0
        self._used += 1
        entries[slot] = position
        self._slot[position] = slot

    def take_evictions(self) -> tuple[int, int]:
        """Entries evicted since the last call: ``(expired, full)``."""
        taken = (self._expired, self._full)
        self._expired = self._full = 0
        return taken

    def items(self) -> Iterator[tuple[bytes, Entry]]:
        """Every stored entry, oldest first, expired ones included (not for the hot path)."""
        for step in range(self._used):
            position = (self._head + step) % self._positions
            if self._slot[position] != _DEAD:
                key, offset, partition, topic_id = _unpack(self._records, position * _RECORD_SIZE)
                yield key, (self._at[position], self._topic_names[topic_id], partition, offset)

    def _make_room(self, horizon: float) -> None:
        """Evict the expired entries at the oldest end, then the oldest if the ring is full."""
        ats = self._at
        while self._count and ats[self._head] < horizon:
            self._drop_oldest()
            self._expired += 1
        if self._used == self._positions:
            self._drop_oldest()
            self._full += 1

    def _drop_oldest(self) -> int:
        """Evict the oldest entry; the index slot its deletion left empty."""
        back = self._slot
        head = self._head
        hole = back[head]
        self._count -= 1
        self._used -= 1
        # The position leaves the ring (its back-pointer is stale from now on).
        head += 1
        self._head = 0 if head == self._positions else head
        if back[self._head] == _DEAD:
            self._skip_dead()
        # Shift the rest of the cluster back over the hole: an entry moves unless its home
        # lies cyclically in (hole, probe], where the move would put it before its home.
        fingerprints, entries, slots = self._fingerprint, self._entry, self.slots
        probe = hole
        while True:
            probe += 1
            if probe == slots:
                probe = 0
            found = fingerprints[probe]
            if not found:
                break
            if 0 < (found % slots - hole) % slots <= (probe - hole) % slots:
                continue
            fingerprints[hole] = found
            moved = entries[probe]
            entries[hole] = moved
            back[moved] = hole
            hole = probe
        fingerprints[hole] = 0
        return hole

    def _retire(self, position: int) -> None:
        """A replaced key's old position: dead, left in the ring until it is the oldest."""
        self._slot[position] = _DEAD
        if position == self._head:
            self._skip_dead()

    def _skip_dead(self) -> None:
        """Advance the head past dead positions (keeps the head live)."""
        back, head, used, positions = self._slot, self._head, self._used, self._positions
        while used and back[head] == _DEAD:
            head += 1
            if head == positions:
                head = 0
            used -= 1
        self._head, self._used = head, used

    def _intern(self, topic: str) -> int:
        names = self._topic_names
        if len(names) <= MAX_TOPICS:
            topic_id = len(names)
            names.append(topic)
        else:
            if not self._free_topics:
                self._reclaim_topics()
            topic_id = self._free_topics.pop()
            names[topic_id] = topic
        self._topic_ids[topic] = topic_id
        return topic_id

    def _reclaim_topics(self) -> None:
        """Free the names no stored entry uses; ``ValueError`` if every one is in use."""
        used = {self._topic_ids[entry[1]] for _, entry in self.items()}
        free = [topic_id for topic_id in range(MAX_TOPICS, 0, -1) if topic_id not in used]
        if not free:
            raise ValueError(f"more than {MAX_TOPICS} distinct topics in the dedupe window at once")
        for topic_id in free:
            del self._topic_ids[self._topic_names[topic_id]]
            self._topic_names[topic_id] = ""
        self._free_topics = free

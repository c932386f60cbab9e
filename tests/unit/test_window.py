"""The compact dedupe window (bridge/window.py): lookups, replacing, eviction by count and age,
deletion inside colliding clusters, the ring's dead positions, the topic table, and a model test
against a plain dict + deque.

The clock is injected, never slept on. Keys that collide are found by asking the window where
a key's probe starts (``Window.home``): the hash is seeded per process, so they are chosen at
run time, never hard-coded.
"""

from __future__ import annotations

import gc
import hashlib
import os
import struct
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.window import MAX_ENTRIES, MAX_TOPICS, SPARE_DIVISOR, Entry, Window

WINDOW_S = 100.0
START = 1_000_000.0
TOPIC = "altinn.correspondence.correspondencepublished"


class Clock:
    """A settable clock in epoch seconds."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _key(n: int) -> bytes:
    return hashlib.blake2b(n.to_bytes(8, "big"), digest_size=16).digest()


def _entry(at: float, offset: int = 0, topic: str = TOPIC, partition: int = 0) -> Entry:
    return (at, topic, partition, offset)


def _put(window: Window, key: bytes, entry: Entry) -> None:
    window.put(key, *entry)


def _keys_at(window: Window, home: int, count: int, start: int = 0) -> list[bytes]:
    """``count`` keys whose probe starts at index slot ``home``."""
    found = []
    n = start
    while len(found) < count:
        if window.home(_key(n)) == home:
            found.append(_key(n))
        n += 1
    return found


def _stored(window: Window) -> list[bytes]:
    return [key for key, _ in window.items()]


# Lookups and replacing


def test_a_stored_key_is_got_back_with_where_it_went():
    clock = Clock()
    window = Window(10, WINDOW_S, clock=clock)
    window.put(_key(1), clock.now, "altinn.a", 2, 12_345_678_901)

    assert window.get(_key(1), clock.now) == (clock.now, "altinn.a", 2, 12_345_678_901)
    assert window.get(_key(1)) == (clock.now, "altinn.a", 2, 12_345_678_901)  # now from the clock
    assert len(window) == 1


def test_an_absent_key_is_none():
    window = Window(10, WINDOW_S, clock=Clock())
    _put(window, _key(1), _entry(START))

    assert window.get(_key(2), START) is None
    assert Window(10, WINDOW_S).get(_key(1), START) is None


def test_replacing_a_key_keeps_one_entry_and_makes_it_the_newest():
    clock = Clock()
    window = Window(3, WINDOW_S, clock=clock)
    for n in range(3):
        _put(window, _key(n), _entry(START, offset=n))

    _put(window, _key(0), _entry(START + 1, offset=99, topic="altinn.b", partition=1))

    assert window.get(_key(0), START + 1) == (START + 1, "altinn.b", 1, 99)
    assert len(window) == 3
    assert _stored(window) == [_key(1), _key(2), _key(0)]
    # Replacing did not evict; the next new key evicts the oldest, which is now key 1.
    assert window.take_evictions() == (0, 0)
    _put(window, _key(3), _entry(START + 1))
    assert _stored(window) == [_key(2), _key(0), _key(3)]
    assert window.take_evictions() == (0, 1)


def test_a_key_must_be_16_bytes_and_a_bad_put_changes_nothing():
    window = Window(4, WINDOW_S, clock=Clock())
    _put(window, _key(1), _entry(START))

    with pytest.raises(ValueError, match="16 bytes, not 15"):
        window.put(_key(2)[:15], START, TOPIC, 0, 0)
    with pytest.raises(struct.error):
        window.put(_key(2), START, TOPIC, 2**31, 0)  # partitions are int32
    with pytest.raises(struct.error):
        window.put(_key(2), START, TOPIC, 0, 2**63)  # offsets are int64

    assert _stored(window) == [_key(1)]
    assert len(window) == 1
    assert window.get(_key(2), START) is None
    _put(window, _key(2), _entry(START, offset=2))
    assert window.get(_key(2), START) == _entry(START, offset=2)


def test_max_entries_must_fit_the_32_bit_index():
    with pytest.raises(ValueError, match="max_entries must be 1 to 1000000000, not 0"):
        Window(0, WINDOW_S)
    with pytest.raises(ValueError, match="not 1000000001"):
        Window(MAX_ENTRIES + 1, WINDOW_S)


# Eviction by count and by age


def test_a_full_window_evicts_the_oldest_first():
    window = Window(3, WINDOW_S, clock=Clock())
    for n in range(5):
        _put(window, _key(n), _entry(START, offset=n))

    assert _stored(window) == [_key(2), _key(3), _key(4)]
    assert window.get(_key(0), START) is None
    assert window.get(_key(1), START) is None
    assert window.get(_key(4), START) == _entry(START, offset=4)
    assert window.take_evictions() == (0, 2)
    assert window.take_evictions() == (0, 0)


def test_entries_older_than_the_window_expire_from_the_oldest_end():
    clock = Clock()
    window = Window(10, WINDOW_S, clock=clock)
    _put(window, _key(0), _entry(START))
    _put(window, _key(1), _entry(START + 10))

    clock.now = START + WINDOW_S  # key 0 is exactly window_s old: still in
    assert window.get(_key(0)) == _entry(START)
    _put(window, _key(2), _entry(clock.now))
    assert window.take_evictions() == (0, 0)
    clock.now = START + WINDOW_S + 0.5
    assert window.get(_key(0)) is None  # ignored before it is evicted
    assert len(window) == 3

    _put(window, _key(3), _entry(clock.now))

    assert _stored(window) == [_key(1), _key(2), _key(3)]
    assert window.take_evictions() == (1, 0)


def test_an_out_of_order_entry_is_ignored_when_expired_and_evicted_in_turn():
    clock = Clock()
    window = Window(10, WINDOW_S, clock=clock)
    _put(window, _key(0), _entry(START))
    _put(window, _key(1), _entry(START - 50))  # learnt late from another replica
    _put(window, _key(2), _entry(START))

    clock.now = START + 60  # key 1 expired; key 0 in front of it has not
    assert window.get(_key(1)) is None
    _put(window, _key(3), _entry(clock.now))
    assert _stored(window) == [_key(0), _key(1), _key(2), _key(3)]
    assert window.take_evictions() == (0, 0)

    clock.now = START + WINDOW_S + 1  # keys 0 and 2 expire: key 1 goes with them
    _put(window, _key(4), _entry(clock.now))
    assert _stored(window) == [_key(3), _key(4)]
    assert window.take_evictions() == (3, 0)


def test_a_window_that_expired_whole_fills_again():
    clock = Clock()
    window = Window(4, WINDOW_S, clock=clock)
    for n in range(4):
        _put(window, _key(n), _entry(clock.now))

    clock.now += 10 * WINDOW_S
    _put(window, _key(9), _entry(clock.now))

    assert _stored(window) == [_key(9)]
    assert len(window) == 1
    assert window.take_evictions() == (4, 0)


def test_a_long_run_wraps_the_ring_many_times_in_order():
    window = Window(5, WINDOW_S, clock=Clock())
    for n in range(1000):
        _put(window, _key(n), _entry(START, offset=n))

    assert _stored(window) == [_key(n) for n in range(995, 1000)]
    assert all(window.get(_key(n), START) == _entry(START, offset=n) for n in range(995, 1000))
    assert all(window.get(_key(n), START) is None for n in range(995))
    assert window.take_evictions() == (0, 995)


# Deletion inside clusters of colliding keys


def test_deleting_the_oldest_of_colliding_keys_keeps_the_others_found():
    window = Window(6, WINDOW_S, clock=Clock())
    colliding = _keys_at(window, 5, 6)
    for n, key in enumerate(colliding):
        _put(window, key, _entry(START, offset=n))

    for evicted in range(6):
        _put(window, _key(10_000 + evicted), _entry(START))
        for n, key in enumerate(colliding):
            expected = None if n <= evicted else _entry(START, offset=n)
            assert window.get(key, START) == expected


def test_a_cluster_that_wraps_past_the_last_slot_survives_deletions():
    window = Window(8, WINDOW_S, clock=Clock())
    last = window.slots - 1
    # Interleaved: keys at home 0 land behind those at the last slot, past the wrap.
    at_last = _keys_at(window, last, 4)
    at_zero = _keys_at(window, 0, 4)
    keys = [key for pair in zip(at_last, at_zero, strict=True) for key in pair]
    for n, key in enumerate(keys):
        _put(window, key, _entry(START, offset=n))

    assert [window.get(key, START) for key in keys] == [_entry(START, offset=n) for n in range(8)]
    for evicted in range(8):
        _put(window, _key(20_000 + evicted), _entry(START))
        for n, key in enumerate(keys):
            expected = None if n <= evicted else _entry(START, offset=n)
            assert window.get(key, START) == expected


def test_replacing_a_key_in_the_middle_of_a_cluster():
    window = Window(5, WINDOW_S, clock=Clock())
    keys = _keys_at(window, 3, 5)
    for n, key in enumerate(keys):
        _put(window, key, _entry(START, offset=n))

    _put(window, keys[2], _entry(START, offset=22))
    _put(window, _key(30_000), _entry(START))  # evicts keys[0]; the cluster shifts back

    assert window.get(keys[0], START) is None
    assert [window.get(key, START) for key in keys[1:]] == [
        _entry(START, offset=1),
        _entry(START, offset=22),
        _entry(START, offset=3),
        _entry(START, offset=4),
    ]
    assert _stored(window) == [keys[1], keys[3], keys[4], keys[2], _key(30_000)]


# The ring's dead positions


def test_replaced_keys_leave_dead_positions_that_leave_with_the_oldest():
    window = Window(8, WINDOW_S, clock=Clock())
    assert 8 // SPARE_DIVISOR + 1 == 2  # the ring has 10 positions
    for n in range(8):
        _put(window, _key(n), _entry(START, offset=n))
    _put(window, _key(0), _entry(START, offset=100))  # the oldest: its dead position goes at once

    _put(window, _key(8), _entry(START, offset=8))

    # key 1 was the oldest live entry; key 0's fresh copy stays.
    assert window.take_evictions() == (0, 1)
    assert _stored(window) == [*(_key(n) for n in range(2, 8)), _key(0), _key(8)]
    # Two dead positions in the middle fill the ring.
    _put(window, _key(5), _entry(START, offset=105))
    _put(window, _key(6), _entry(START, offset=106))
    assert window.take_evictions() == (0, 0)
    assert len(window) == 8
    # Replacing a key needs a position: the oldest goes, though the window is not over max_entries.
    _put(window, _key(7), _entry(START, offset=107))
    assert window.take_evictions() == (0, 1)
    assert len(window) == 7
    assert _stored(window) == [_key(3), _key(4), _key(0), _key(8), _key(5), _key(6), _key(7)]
    assert window.get(_key(2), START) is None
    assert window.get(_key(7), START) == _entry(START, offset=107)


# The topic table


def test_topics_are_interned_and_read_back():
    window = Window(100, WINDOW_S, clock=Clock())
    for n in range(100):
        _put(window, _key(n), _entry(START, offset=n, topic=f"altinn.t{n % 7}"))

    assert [window.get(_key(n), START) for n in range(100)] == [
        _entry(START, offset=n, topic=f"altinn.t{n % 7}") for n in range(100)
    ]


def test_topic_names_no_entry_uses_are_forgotten_when_the_table_is_full():
    window = Window(4, WINDOW_S, clock=Clock())
    for n in range(MAX_TOPICS):  # every index handed out; keys 0..65530 evicted since
        _put(window, _key(n), _entry(START, offset=n, topic=f"t{n}"))

    for n in range(MAX_TOPICS, MAX_TOPICS + 2):  # new names: the unused ones are forgotten
        _put(window, _key(n), _entry(START, offset=n, topic=f"t{n}"))

    live = range(MAX_TOPICS - 2, MAX_TOPICS + 2)
    assert _stored(window) == [_key(n) for n in live]
    assert [window.get(_key(n), START) for n in live] == [
        _entry(START, offset=n, topic=f"t{n}") for n in live
    ]
    _put(window, _key(0), _entry(START, topic="t1"))  # a forgotten name, interned again
    assert window.get(_key(0), START) == _entry(START, topic="t1")
    assert window.get(_key(MAX_TOPICS + 1), START) == _entry(
        START, offset=MAX_TOPICS + 1, topic=f"t{MAX_TOPICS + 1}"
    )


def test_more_distinct_topics_than_the_table_holds_at_once_is_refused():
    window = Window(MAX_TOPICS + 1, WINDOW_S, clock=Clock())
    for n in range(MAX_TOPICS):
        _put(window, _key(n), _entry(START, topic=f"t{n}"))

    with pytest.raises(ValueError, match="more than 65535 distinct topics"):
        _put(window, _key(MAX_TOPICS), _entry(START, topic="one too many"))

    assert len(window) == MAX_TOPICS
    _put(window, _key(MAX_TOPICS), _entry(START, topic="t7"))  # a known name is fine
    assert window.get(_key(MAX_TOPICS), START) == _entry(START, topic="t7")


# Memory: the arrays are reserved in an mmap, backed by pages only as they are touched

#: BRIDGE_DEDUPE_MAX_ENTRIES' default.
DEFAULT_ENTRIES = 500_000
MIB = 2**20


def _statm() -> tuple[int, int]:
    """This process's virtual size and RSS in bytes (/proc/self/statm)."""
    size, resident = Path("/proc/self/statm").read_text().split()[:2]
    page = os.sysconf("SC_PAGE_SIZE")
    return int(size) * page, int(resident) * page


def test_the_arrays_reserve_less_than_80_bytes_per_entry_and_are_fixed():
    window = Window(10_000, WINDOW_S, clock=Clock())
    before = window.nbytes
    for n in range(20_000):
        _put(window, _key(n), _entry(START, offset=n))

    assert window.nbytes == before
    assert before / 10_000 < 80


def test_a_window_costs_no_rss_until_it_is_filled():
    gc.collect()
    size_before, rss_before = _statm()
    window = Window(10_000_000, WINDOW_S, clock=Clock())  # 710 MB reserved
    size, rss = _statm()

    assert window.nbytes >= 70 * 10_000_000
    assert size - size_before >= window.nbytes  # reserved...
    assert rss - rss_before < MIB  # ...but not touched, let alone zeroed
    for n in range(100):
        _put(window, _key(n), _entry(START, offset=n))
    # A page of each ring array, and about two random pages of the index per key.
    assert _statm()[1] - rss_before < 2 * MIB
    assert [window.get(_key(n), START) for n in range(100)] == [_entry(START, offset=n) for n in range(100)]


def test_rss_grows_to_the_reserved_size_as_the_window_fills_and_then_stays_flat():
    entries = 50_000
    keys = [_key(n) for n in range(4 * entries)]
    window = Window(entries, WINDOW_S, clock=Clock())
    gc.collect()
    rss_before = _statm()[1]
    for key in keys[:entries]:
        window.put(key, START, TOPIC, 0, 0)
    filled = _statm()[1] - rss_before
    for key in keys[entries : 3 * entries]:  # the ring goes round, touching its spare positions
        window.put(key, START, TOPIC, 0, 0)
    wrapped = _statm()[1] - rss_before
    for key in keys[3 * entries :]:
        window.put(key, START, TOPIC, 0, 0)
    refilled = _statm()[1] - rss_before

    assert window.nbytes * 0.8 < filled <= wrapped <= window.nbytes + 256 * 1024
    assert refilled - wrapped < 64 * 1024
    assert len(window) == entries
    assert window.get(keys[-1], START) == _entry(START)


def _no_huge_page_bytes() -> int:
    """Bytes of this process's mappings that refuse transparent huge pages (/proc/self/smaps)."""
    total = size = 0
    for line in Path("/proc/self/smaps").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "Size":
            size = int(value.split()[0]) * 1024
        elif name == "VmFlags" and "nh" in value.split():
            total += size
    return total


def test_the_pages_are_never_transparent_huge_pages():
    gc.collect()
    before = _no_huge_page_bytes()
    window = Window(DEFAULT_ENTRIES, WINDOW_S)

    # MADV_NOHUGEPAGE: sparse pages stay 4 KiB, whatever the machine's THP setting.
    assert _no_huge_page_bytes() - before == window.nbytes
    del window
    assert _no_huge_page_bytes() == before


class _Owner:
    """Holds a window whose clock is its own method: a reference cycle only gc.collect() frees."""

    def __init__(self, entries: int) -> None:
        self.window = Window(entries, WINDOW_S, clock=self.now)

    def now(self) -> float:
        return START


def test_dropped_windows_give_their_memory_back():
    gc.collect()
    size_before, rss_before = _statm()
    for n in range(200):
        window = Window(DEFAULT_ENTRIES, WINDOW_S, clock=Clock()) if n % 2 else _Owner(DEFAULT_ENTRIES).window
        for k in range(200):  # touches ~400 pages of the index, 1.6 MB
            _put(window, _key(k), _entry(START, offset=k))
        assert window.get(_key(199)) == _entry(START, offset=199)
        del window
    gc.collect()
    size, rss = _statm()

    # 200 windows reserve 7 GB and touch 320 MB: what is left is less than one window's.
    assert size - size_before < Window(DEFAULT_ENTRIES, WINDOW_S).nbytes
    assert rss - rss_before < 4 * MIB


# A model: a dict of entries and a deque of positions (None once replaced)


@dataclass
class Model:
    """The window's rules, written plainly."""

    max_entries: int
    entries: dict[bytes, Entry] = field(default_factory=dict)
    ring: deque[list[bytes | None]] = field(default_factory=deque)
    cells: dict[bytes, list[bytes | None]] = field(default_factory=dict)
    expired: int = 0
    full: int = 0

    def get(self, key: bytes, now: float) -> Entry | None:
        entry = self.entries.get(key)
        return None if entry is None or entry[0] < now - WINDOW_S else entry

    def put(self, key: bytes, entry: Entry, now: float) -> None:
        while self.ring and self.entries[self._oldest()][0] < now - WINDOW_S:
            self._drop()
            self.expired += 1
        if len(self.ring) == self.max_entries + self.max_entries // SPARE_DIVISOR + 1:
            self._drop()
            self.full += 1
        if key in self.entries:
            self.cells[key][0] = None
            self._skip_dead()
        elif len(self.entries) == self.max_entries:
            self._drop()
            self.full += 1
        cell: list[bytes | None] = [key]
        self.ring.append(cell)
        self.cells[key] = cell
        self.entries[key] = entry

    def items(self) -> list[tuple[bytes, Entry]]:
        return [(cell[0], self.entries[cell[0]]) for cell in self.ring if cell[0] is not None]

    def _oldest(self) -> bytes:
        key = self.ring[0][0]
        assert key is not None
        return key

    def _drop(self) -> None:
        key = self._oldest()
        self.ring.popleft()
        del self.entries[key], self.cells[key]
        self._skip_dead()

    def _skip_dead(self) -> None:
        while self.ring and self.ring[0][0] is None:
            self.ring.popleft()


_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.integers(0, 23),  # key
            st.sampled_from([-120.0, -100.0, -30.0, 0.0, 0.0, 0.0, 5.0]),  # at, relative to now
            st.integers(0, 3),  # topic
            st.integers(0, 2**31 - 1),  # partition
            st.integers(-1, 2**63 - 1),  # offset
        ),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 1.0, 30.0, 100.0, 101.0])),
        st.tuples(st.just("get"), st.integers(0, 23)),
    ),
    max_size=80,
)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(max_entries=st.integers(1, 9), operations=_OPERATIONS)
def test_the_window_behaves_like_the_model(max_entries: int, operations: list[tuple]) -> None:
    clock = Clock()
    window = Window(max_entries, WINDOW_S, clock=clock)
    model = Model(max_entries)
    # Keys crowded onto the first, the middle and the last index slot (clusters that wrap),
    # and a few anywhere.
    keys = [
        *_keys_at(window, window.slots - 1, 6),
        *_keys_at(window, 0, 6),
        *_keys_at(window, window.slots // 2, 6),
        *(_key(100_000 + n) for n in range(6)),
    ]
    for operation in operations:
        if operation[0] == "put":
            _, k, age, topic, partition, offset = operation
            entry = (clock.now + age, f"altinn.t{topic}", partition, offset)
            window.put(keys[k], *entry)
            model.put(keys[k], entry, clock.now)
        elif operation[0] == "advance":
            clock.now += operation[1]
        else:
            assert window.get(keys[operation[1]]) == model.get(keys[operation[1]], clock.now)
        assert len(window) == len(model.entries)
        assert list(window.items()) == model.items()
        assert window.take_evictions() == (model.expired, model.full)
        model.expired = model.full = 0
    assert [window.get(key, clock.now) for key in keys] == [model.get(key, clock.now) for key in keys]

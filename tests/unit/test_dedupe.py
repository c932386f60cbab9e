"""The dedupe window (bridge/dedupe.py): claims, commits, releases, expiry, eviction, keys, records.

The clock is injected, never slept on.
"""

from __future__ import annotations

import orjson
import pytest

from bridge.dedupe import Claimed, Dedupe, Seen, dedupe_key, unrecorded_ranges

WINDOW_S = 100.0
SOURCE = "https://platform.tt02.altinn.no/correspondence/api/v1/correspondence"


class Clock:
    """A settable clock in epoch seconds."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _window(clock: Clock, max_entries: int = 1000) -> Dedupe:
    return Dedupe(WINDOW_S, max_entries, clock=clock)


def _key(event_id: str) -> bytes:
    return dedupe_key(SOURCE, event_id)


def _seen(at: float, offset: int = 0) -> Seen:
    return Seen(at, "altinn.correspondence.correspondencepublished", 0, offset)


# --- claim, hold, commit, release ----------------------------------------------------
# The window holds no future of its own: a duplicate of a delivery in flight gets what the
# owner held (its record's place in a Kafka batch) and waits for that batch itself.

PLACE = ("batch future", 3)


def test_first_claim_owns_the_key():
    dedupe = _window(Clock())

    assert dedupe.claim(_key("a")) == Claimed()


def test_second_claim_while_pending_gets_what_the_owner_holds():
    dedupe = _window(Clock())
    dedupe.claim(_key("a"))
    dedupe.hold(_key("a"), PLACE)

    second = dedupe.claim(_key("a"))

    assert second == Claimed(wait=PLACE, previous="in_flight")


def test_other_keys_are_not_held_up_by_a_pending_one():
    dedupe = _window(Clock())
    dedupe.claim(_key("a"))
    dedupe.hold(_key("a"), PLACE)

    assert dedupe.claim(_key("b")) == Claimed()


def test_after_commit_a_claim_is_a_duplicate_of_the_published_event():
    clock = Clock()
    dedupe = _window(clock)
    seen = _seen(clock.now, offset=7)
    dedupe.claim(_key("a"))
    dedupe.hold(_key("a"), PLACE)
    dedupe.commit(_key("a"), seen)

    assert dedupe.claim(_key("a")) == Claimed(seen=seen, previous="published")
    assert dedupe.lookup(_key("a")) == seen
    assert len(dedupe) == 1


def test_after_release_the_next_claim_owns_the_key_again():
    dedupe = _window(Clock())
    dedupe.claim(_key("a"))
    dedupe.hold(_key("a"), PLACE)
    dedupe.release(_key("a"))

    again = dedupe.claim(_key("a"))

    assert again == Claimed(previous="failed")
    assert dedupe.lookup(_key("a")) is None
    assert len(dedupe) == 0


def test_a_retry_that_succeeds_is_published_then_a_duplicate():
    clock = Clock()
    dedupe = _window(clock)
    dedupe.claim(_key("a"))
    dedupe.release(_key("a"))
    dedupe.claim(_key("a"))
    seen = _seen(clock.now)
    dedupe.commit(_key("a"), seen)

    assert dedupe.claim(_key("a")) == Claimed(seen=seen, previous="published")


def test_a_key_published_to_another_topic_is_claimed_again():
    # An event parked on the unknown-type topic, redriven once its type has a route.
    clock = Clock()
    dedupe = _window(clock)
    parked = Seen(clock.now, "altinn.correspondence.unknown", 0, 5)
    dedupe.remember(_key("a"), parked)

    assert dedupe.claim(_key("a"), "altinn.correspondence.unknown") == Claimed(
        seen=parked, previous="published"
    )
    routed = dedupe.claim(_key("a"), "altinn.correspondence.newtype")
    assert routed == Claimed(previous="published")
    moved = Seen(clock.now + 1, "altinn.correspondence.newtype", 0, 0)
    dedupe.commit(_key("a"), moved)
    assert dedupe.claim(_key("a"), "altinn.correspondence.newtype").seen == moved


def test_a_later_publish_to_another_topic_learnt_from_the_state_topic_replaces_the_entry():
    clock = Clock()
    dedupe = _window(clock)
    dedupe.remember(_key("a"), Seen(clock.now, "altinn.correspondence.unknown", 0, 5))
    moved = Seen(clock.now + 1, "altinn.correspondence.newtype", 0, 0)

    dedupe.remember(_key("a"), moved)

    assert dedupe.lookup(_key("a")) == moved


# --- the window in time ----------------------------------------------------------------


async def test_entry_is_found_until_the_window_ends():
    clock = Clock()
    dedupe = _window(clock)
    seen = _seen(clock.now)
    dedupe.remember(_key("a"), seen)

    clock.now += WINDOW_S
    assert dedupe.lookup(_key("a")) == seen
    assert dedupe.claim(_key("a")).seen == seen


async def test_entry_older_than_the_window_is_not_found():
    clock = Clock()
    dedupe = _window(clock)
    dedupe.remember(_key("a"), _seen(clock.now))

    clock.now += WINDOW_S + 1
    assert dedupe.lookup(_key("a")) is None
    assert dedupe.claim(_key("a")) == Claimed()


async def test_event_republished_after_its_window_is_then_a_duplicate():
    # An expired key is published again; its redelivery must find the new copy.
    clock = Clock()
    dedupe = _window(clock)
    dedupe.remember(_key("a"), _seen(clock.now, offset=1))
    clock.now += WINDOW_S + 1

    assert dedupe.claim(_key("a")) == Claimed()
    republished = _seen(clock.now, offset=2)
    dedupe.commit(_key("a"), republished)

    assert dedupe.lookup(_key("a")) == republished
    assert dedupe.claim(_key("a")) == Claimed(seen=republished, previous="published")


def test_expired_entries_are_evicted_and_counted():
    clock = Clock()
    dedupe = _window(clock)
    dedupe.remember(_key("old-1"), _seen(clock.now))
    dedupe.remember(_key("old-2"), _seen(clock.now + 1))
    clock.now += 50
    dedupe.remember(_key("young"), _seen(clock.now))
    assert dedupe.take_evictions() == (0, 0)

    clock.now += WINDOW_S - 25  # old ones are past the window, the young one is not
    dedupe.remember(_key("new"), _seen(clock.now))

    assert dedupe.take_evictions() == (2, 0)
    assert len(dedupe) == 2
    assert dedupe.lookup(_key("young")) is not None
    assert dedupe.lookup(_key("new")) is not None


def test_take_evictions_resets_the_counts():
    clock = Clock()
    dedupe = _window(clock)
    dedupe.remember(_key("a"), _seen(clock.now))
    clock.now += WINDOW_S + 1
    dedupe.remember(_key("b"), _seen(clock.now))

    assert dedupe.take_evictions() == (1, 0)
    assert dedupe.take_evictions() == (0, 0)


# --- the window in size ------------------------------------------------------------------


def test_max_entries_evicts_the_oldest_first_counted_as_full():
    clock = Clock()
    dedupe = _window(clock, max_entries=2)
    for n, name in enumerate(["first", "second", "third"]):
        dedupe.remember(_key(name), _seen(clock.now + n))

    assert len(dedupe) == 2
    assert dedupe.lookup(_key("first")) is None
    assert dedupe.lookup(_key("second")) is not None
    assert dedupe.lookup(_key("third")) is not None
    assert dedupe.take_evictions() == (0, 1)


async def test_key_evicted_for_room_is_published_again():
    clock = Clock()
    dedupe = _window(clock, max_entries=1)
    for name in ("first", "second"):
        dedupe.claim(_key(name))
        dedupe.commit(_key(name), _seen(clock.now))

    assert dedupe.claim(_key("first")) == Claimed()
    assert dedupe.take_evictions() == (0, 1)


# --- remember (keys learnt from the state topic) ---------------------------------------------


def test_remember_ignores_an_entry_already_past_the_window():
    clock = Clock()
    dedupe = _window(clock)

    dedupe.remember(_key("a"), _seen(clock.now - WINDOW_S - 1))

    assert len(dedupe) == 0
    assert dedupe.lookup(_key("a")) is None
    assert dedupe.take_evictions() == (0, 0)


def test_remember_keeps_the_first_copy_of_a_key():
    clock = Clock()
    dedupe = _window(clock)
    first = _seen(clock.now, offset=1)

    dedupe.remember(_key("a"), first)
    dedupe.remember(_key("a"), _seen(clock.now + 1, offset=2))

    assert len(dedupe) == 1
    assert dedupe.lookup(_key("a")) == first


async def test_remembered_key_makes_a_claim_a_duplicate():
    clock = Clock()
    dedupe = _window(clock)
    seen = _seen(clock.now - 10, offset=3)
    dedupe.remember(_key("a"), seen)

    assert dedupe.claim(_key("a")) == Claimed(seen=seen, previous="published")


# --- keys ------------------------------------------------------------------------------------


def test_key_is_sixteen_bytes_whatever_the_length_of_the_id():
    assert len(dedupe_key(SOURCE, "x")) == 16
    assert len(dedupe_key(SOURCE, "x" * 10_000)) == 16
    assert len(dedupe_key("", "")) == 16


def test_key_is_stable():
    assert dedupe_key(SOURCE, "a") == dedupe_key(SOURCE, "a")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ((SOURCE, "a"), (SOURCE, "b")),
        ((SOURCE, "a"), (SOURCE.replace("tt02.", ""), "a")),
        (("a", "b"), ("b", "a")),
        (("ab", "c"), ("a", "bc")),
        (("a\nb", "c"), ("a", "b\nc")),
        (("a\n", "b"), ("a", "\nb")),
    ],
    ids=["other-id", "other-source", "swapped", "split-elsewhere", "newline-split", "newline-edge"],
)
def test_different_source_or_id_give_different_keys(one: tuple[str, str], other: tuple[str, str]):
    assert dedupe_key(*one) != dedupe_key(*other)


# --- state records ---------------------------------------------------------------------------


def test_state_record_round_trips():
    seen = Seen(1_764_000_000.25, "altinn.correspondence.correspondencepublished", 3, 12345)

    value = seen.encode("8e81973e-0bec-47b0-b898-d190f9ebdacc")

    assert Seen.decode(value) == seen
    assert orjson.loads(value)["id"] == "8e81973e-0bec-47b0-b898-d190f9ebdacc"


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"null",
        b"[]",
        b'"a string"',
        b"{}",
        b'{"at": 1.0, "topic": "t", "partition": 0}',
        b'{"at": "yesterday", "topic": "t", "partition": 0, "offset": 1}',
        b'{"at": 1.0, "topic": "t", "partition": "zero", "offset": 1}',
        b'{"at": 1.0, "topic": "t", "partition": 0, "offset": [1]}',
    ],
    ids=[
        "empty",
        "not-json",
        "not-utf8",
        "null",
        "array",
        "string",
        "empty-object",
        "no-offset",
        "at-not-a-number",
        "partition-not-a-number",
        "offset-a-list",
    ],
)
def test_decode_rejects_what_is_not_a_state_record(value: bytes):
    with pytest.raises(ValueError, match="not a dedupe state record"):
        Seen.decode(value)


# --- offset ranges no state record covers -------------------------------------------------------


@pytest.mark.parametrize(
    ("offsets", "ranges"),
    [
        ([5], [(6, None)]),
        ([1, 2, 3], [(4, None)]),
        ([1, 4, 5, 9], [(2, 4), (6, 9), (10, None)]),
        ([9, 1, 5, 4, 5], [(2, 4), (6, 9), (10, None)]),
        ([0, 2], [(1, 2), (3, None)]),
    ],
    ids=["one", "contiguous", "gaps", "unordered-with-repeats", "one-missing"],
)
def test_unrecorded_ranges(offsets: list[int], ranges: list[tuple[int, int | None]]):
    assert unrecorded_ranges(offsets) == ranges


def test_unrecorded_ranges_needs_an_offset():
    with pytest.raises(ValueError, match="no recorded offsets"):
        unrecorded_ranges([])

"""What a dedupe window entry costs: the ``OrderedDict`` :class:`bridge.dedupe.Dedupe` used to
hold (:class:`OrderedDictWindow`, the same work) and the mmap-backed arrays of
:class:`bridge.window.Window` it holds now (also measured through :class:`Dedupe`).

``python -m devtools.dedupe_memory [ENTRIES]``
    Bytes per key in a full window (default 200,000 keys): traced by tracemalloc for the
    ``OrderedDict``; for the ``Window``, the bytes it reserves (``nbytes``), since tracemalloc
    cannot see mmap pages (what it does trace, the Python objects, is printed too).
``python -m devtools.dedupe_memory --rss [ENTRIES]``
    Bytes of RSS per key (``/proc/self/statm``): each window is built in a fresh process (the
    RSS right after construction), filled, then twice as many keys again are put through it in
    two rounds (the ring goes round once: it must stop growing); also the time of one full
    garbage collection with the window full. Default 500,000 keys, the default
    ``BRIDGE_DEDUPE_MAX_ENTRIES``.
``python -m devtools.dedupe_memory --speed [ENTRIES]``
    Microseconds per lookup (hit and miss) and per insert into a full window (which evicts
    the oldest), best of 5 runs, for both. Default 500,000 keys.

The figure in ``BRIDGE_DEDUPE_MAX_ENTRIES``' help (docs/configuration.md) comes from this.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

from bridge.dedupe import Dedupe, Seen, dedupe_key
from bridge.window import Window

SOURCE = "https://platform.altinn.no/correspondence/api/v1/correspondence"
TOPICS = [f"altinn.correspondence.type{n}" for n in range(18)]
WINDOW_S = 48 * 3600.0
#: Offsets beyond the small-int cache, as in a long-lived topic.
OFFSET = 10_000_000
KINDS = ("ordereddict", "dedupe", "window")
_ROOT = Path(__file__).resolve().parents[1]


def _key(n: int) -> bytes:
    return dedupe_key(SOURCE, f"00000000-0000-0000-0000-{n:012d}")


def _keys(start: int, stop: int) -> Iterator[tuple[int, bytes]]:
    return ((n, _key(n)) for n in range(start, stop))


def traced_bytes_per_entry(window: OrderedDictWindow | Window, entries: int) -> float:
    """Bytes tracemalloc sees held by ``window`` once ``entries`` keys are put in it, per key.

    Keys are made inside the traced span, as the request makes them: what the window keeps
    of them counts, what it copies and lets go does not. A :class:`Window`'s arrays are mmap
    pages, which tracemalloc does not see: for it this is only the Python objects around them.
    """
    now = time.time()
    tracemalloc.start()
    for n, key in _keys(0, entries):
        window.put(key, now, TOPICS[n % len(TOPICS)], n % 3, OFFSET + n, now=now)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held / entries


def _resident() -> int:
    """Resident set size of this process in bytes."""
    fields = Path("/proc/self/statm").read_text().split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_child(kind: str, entries: int) -> dict[str, float]:
    """Build and fill one window in this process; the RSS at each step (run in a fresh process)."""
    now = time.time()
    gc.collect()
    before = _resident()
    started = time.perf_counter()
    put: Callable[[int, bytes], object]
    if kind == "dedupe":
        dedupe = Dedupe(window_s=WINDOW_S, max_entries=entries)

        def put(n: int, key: bytes) -> None:
            dedupe.remember(key, Seen(now, TOPICS[n % len(TOPICS)], n % 3, OFFSET + n))

    else:
        window = Window(entries, WINDOW_S) if kind == "window" else OrderedDictWindow(entries, WINDOW_S)

        def put(n: int, key: bytes) -> None:
            window.put(key, now, TOPICS[n % len(TOPICS)], n % 3, OFFSET + n, now=now)

    construct_ms = (time.perf_counter() - started) * 1000
    constructed = _resident()
    for n, key in _keys(0, entries):
        put(n, key)
    filled = _resident()
    started = time.perf_counter()
    gc.collect()
    gc_ms = (time.perf_counter() - started) * 1000
    rounds = []
    for start in (entries, 2 * entries):
        for n, key in _keys(start, start + entries):
            put(n, key)
        rounds.append(_resident() - before)
    return {
        "construct_ms": construct_ms,
        # What the Window reserves, alone or inside Dedupe (a window of the same size).
        "reserved": 0 if kind == "ordereddict" else Window(entries, WINDOW_S).nbytes,
        "constructed": constructed - before,
        "filled": filled - before,
        "refilled": rounds[0],
        "refilled_again": rounds[1],
        "gc_ms": gc_ms,
    }


def rss(entries: int) -> None:
    """Print RSS per key of each kind of window, each measured in a fresh process."""
    print(f"RSS of a window of {entries} keys, each built in a fresh process (/proc/self/statm):")
    for kind in KINDS:
        child = [sys.executable, "-m", "devtools.dedupe_memory", "--rss-child", kind, str(entries)]
        result = json.loads(subprocess.run(child, check=True, capture_output=True, cwd=_ROOT).stdout)
        mib = 2**20
        reserved = f" ({result['reserved'] / mib:.1f} MiB reserved)" if result["reserved"] else ""
        print(
            f"  {kind:11} constructed in {result['construct_ms']:.2f} ms: "
            f"+{result['constructed'] / mib:.1f} MiB{reserved}; "
            f"full: +{result['filled'] / mib:.1f} MiB = {result['filled'] / entries:.0f} B/key; "
            f"after {entries} more keys: +{result['refilled'] / mib:.1f} MiB, "
            f"{entries} more: +{result['refilled_again'] / mib:.1f} MiB "
            f"= {result['refilled_again'] / entries:.0f} B/key; "
            f"full gc.collect(): {result['gc_ms']:.1f} ms"
        )


class OrderedDictWindow:
    """What :class:`Dedupe` did to its ``OrderedDict`` per lookup and per insert, behind
    :class:`Window`'s ``get``/``put``, so both are timed doing the same work."""

    def __init__(self, max_entries: int, window_s: float) -> None:
        self.max_entries = max_entries
        self.window_s = window_s
        self._seen: OrderedDict[bytes, tuple[float, str, int, int]] = OrderedDict()
        self.expired = self.full = 0

    def get(self, key: bytes, now: float) -> tuple[float, str, int, int] | None:
        """As ``Dedupe.lookup`` (without building a ``Seen``)."""
        entry = self._seen.get(key)
        if entry is None or entry[0] < now - self.window_s:
            return None
        return entry

    def put(self, key: bytes, at: float, topic: str, partition: int, offset: int, *, now: float) -> None:
        """As ``Dedupe.remember`` after its checks: insert, expire from the front, evict."""
        horizon = now - self.window_s
        self._seen[key] = (at, topic, partition, offset)
        self._seen.move_to_end(key)
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest[0] >= horizon:
                break
            self._seen.popitem(last=False)
            self.expired += 1
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
            self.full += 1


def _best_us(run: Callable[[int], None], runs: int, per_run: int) -> float:
    best = min(_timed(run, attempt) for attempt in range(runs))
    return best / per_run * 1e6


def _timed(run: Callable[[int], None], attempt: int) -> float:
    started = time.perf_counter()
    run(attempt)
    return time.perf_counter() - started


def speed(entries: int, runs: int = 5, per_run: int = 100_000) -> None:
    """Print µs per get (hit, miss) and per put into a full window, old and new."""
    now = time.time()
    keys = [_key(n) for n in range(entries + runs * per_run)]
    absent = [_key(-1 - n) for n in range(per_run)]
    print(f"µs per operation on a full window of {entries} keys (best of {runs} runs of {per_run}):")
    for name, window in (
        ("OrderedDict (replaced)", OrderedDictWindow(entries, WINDOW_S)),
        ("Window (mmap)", Window(entries, WINDOW_S)),
    ):
        put, get = window.put, window.get
        for n in range(entries):
            put(keys[n], now, TOPICS[n % len(TOPICS)], n % 3, OFFSET + n, now=now)

        def puts(attempt: int) -> None:
            first = entries + attempt * per_run
            for n in range(first, first + per_run):
                put(keys[n], now, TOPICS[n % len(TOPICS)], n % 3, OFFSET + n, now=now)  # noqa: B023

        def hits(attempt: int) -> None:
            del attempt
            for key in keys[-per_run:]:
                get(key, now)  # noqa: B023

        def misses(attempt: int) -> None:
            del attempt
            for key in absent:
                get(key, now)  # noqa: B023

        put_us = _best_us(puts, runs, per_run)
        hit_us, miss_us = _best_us(hits, runs, per_run), _best_us(misses, runs, per_run)
        print(f"  {name:27} put {put_us:.2f}  get hit {hit_us:.2f}  get miss {miss_us:.2f}")


def tracemalloc_figures(entries: int) -> None:
    """Print bytes per key of both windows: traced for the OrderedDict, reserved for the Window."""
    print(f"Bytes per key in a window of {entries} keys:")
    ordered = traced_bytes_per_entry(OrderedDictWindow(entries, WINDOW_S), entries)
    print(
        f"  {'OrderedDict (replaced)':23} {ordered:.0f} B/key traced by tracemalloc; "
        f"BRIDGE_DEDUPE_MAX_ENTRIES=500000 -> about {ordered * 500_000 / 2**20:.0f} MiB when full"
    )
    window = Window(entries, WINDOW_S)
    traced = traced_bytes_per_entry(window, entries)
    print(
        f"  {'Window (mmap arrays)':23} {window.nbytes / entries:.0f} B/key reserved (nbytes, mmap pages: "
        f"tracemalloc cannot see them; RSS: --rss) + {traced:.1f} B/key of Python objects traced; "
        f"BRIDGE_DEDUPE_MAX_ENTRIES=500000 -> {Window(500_000, WINDOW_S).nbytes / 2**20:.0f} MiB reserved"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the measurement the arguments ask for."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.dedupe_memory", description=__doc__.split("\n")[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--rss", action="store_true", help="RSS per key, each window in a fresh process")
    mode.add_argument("--speed", action="store_true", help="µs per get and put on a full window")
    mode.add_argument("--rss-child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("entries", type=int, nargs="?", help="keys in the window")
    args = parser.parse_args(argv)
    if args.rss_child:
        print(json.dumps(rss_child(args.rss_child, args.entries)))
    elif args.rss:
        rss(args.entries or 500_000)
    elif args.speed:
        speed(args.entries or 500_000)
    else:
        tracemalloc_figures(args.entries or 200_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())

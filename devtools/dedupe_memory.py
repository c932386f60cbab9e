"""What a dedupe window entry costs: the ``OrderedDict`` of :class:`bridge.dedupe.Dedupe` and the
flat arrays of :class:`bridge.window.Window`, measured on the real classes.

``python -m devtools.dedupe_memory [ENTRIES]``
    Bytes per key traced by tracemalloc in a full window (default 200,000 keys).
``python -m devtools.dedupe_memory --rss [ENTRIES]``
    Bytes of RSS per key (``/proc/self/statm``): each window is built and filled in a fresh
    process, then as many keys again are put through it (it must not grow); also the time of
    one full garbage collection with the window full. Default 500,000 keys, the default
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
KINDS = ("dedupe", "window")
_ROOT = Path(__file__).resolve().parents[1]


def _key(n: int) -> bytes:
    return dedupe_key(SOURCE, f"00000000-0000-0000-0000-{n:012d}")


def _keys(start: int, stop: int) -> Iterator[tuple[int, bytes]]:
    return ((n, _key(n)) for n in range(start, stop))


def bytes_per_entry(entries: int) -> float:
    """Traced bytes held by a full :class:`Dedupe` window of ``entries`` keys, per key.

    Keys are made inside the traced span, as the request makes them: what the window keeps
    of them counts, what it copies and lets go does not.
    """
    now = time.time()
    tracemalloc.start()
    window = Dedupe(window_s=WINDOW_S, max_entries=entries)
    for n, key in _keys(0, entries):
        window.remember(key, Seen(now, TOPICS[n % len(TOPICS)], n % 3, OFFSET + n))
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held / entries


def window_bytes_per_entry(entries: int) -> float:
    """Traced bytes held by a full :class:`Window` of ``entries`` keys, per key (as above)."""
    now = time.time()
    tracemalloc.start()
    window = Window(entries, WINDOW_S)
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
    if kind == "window":
        window = Window(entries, WINDOW_S)

        def put(n: int, key: bytes) -> None:
            window.put(key, now, TOPICS[n % len(TOPICS)], n % 3, OFFSET + n, now=now)

    else:
        dedupe = Dedupe(window_s=WINDOW_S, max_entries=entries)

        def put(n: int, key: bytes) -> None:
            dedupe.remember(key, Seen(now, TOPICS[n % len(TOPICS)], n % 3, OFFSET + n))

    construct_ms = (time.perf_counter() - started) * 1000
    constructed = _resident()
    for n, key in _keys(0, entries):
        put(n, key)
    filled = _resident()
    started = time.perf_counter()
    gc.collect()
    gc_ms = (time.perf_counter() - started) * 1000
    for n, key in _keys(entries, 2 * entries):
        put(n, key)
    refilled = _resident()
    return {
        "construct_ms": construct_ms,
        "constructed": constructed - before,
        "filled": filled - before,
        "refilled": refilled - before,
        "gc_ms": gc_ms,
    }


def rss(entries: int) -> None:
    """Print RSS per key of both windows, each measured in a fresh process."""
    print(f"RSS of a window of {entries} keys, each built in a fresh process (/proc/self/statm):")
    for kind in KINDS:
        child = [sys.executable, "-m", "devtools.dedupe_memory", "--rss-child", kind, str(entries)]
        result = json.loads(subprocess.run(child, check=True, capture_output=True, cwd=_ROOT).stdout)
        mib = 2**20
        print(
            f"  {kind:7} constructed in {result['construct_ms']:.0f} ms: "
            f"+{result['constructed'] / mib:.1f} MiB; "
            f"full: +{result['filled'] / mib:.1f} MiB = {result['filled'] / entries:.0f} B/key; "
            f"after {entries} more keys: +{result['refilled'] / mib:.1f} MiB; "
            f"full gc.collect(): {result['gc_ms']:.1f} ms"
        )


class OrderedDictWindow:
    """What :class:`Dedupe` does to its ``OrderedDict`` per lookup and per insert, behind
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
        ("OrderedDict (Dedupe today)", OrderedDictWindow(entries, WINDOW_S)),
        ("Window", Window(entries, WINDOW_S)),
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
        entries = args.entries or 200_000
        for name, per_entry in (
            ("Dedupe (OrderedDict)", bytes_per_entry(entries)),
            ("Window (arrays)", window_bytes_per_entry(entries)),
        ):
            full_mib = per_entry * 500_000 / 2**20
            print(f"{name:20} {entries} entries: {per_entry:.0f} bytes per entry (key included)")
            print(f"{'':20} BRIDGE_DEDUPE_MAX_ENTRIES=500000 -> about {full_mib:.0f} MiB when full")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Memory cost of one dedupe window entry, measured with tracemalloc on the real
:class:`bridge.dedupe.Dedupe`: ``python -m devtools.dedupe_memory [ENTRIES]``.

The figure in ``BRIDGE_DEDUPE_MAX_ENTRIES``' help (docs/configuration.md) comes from this.
"""

from __future__ import annotations

import sys
import time
import tracemalloc

from bridge.dedupe import Dedupe, Seen, dedupe_key

SOURCE = "https://platform.altinn.no/correspondence/api/v1/correspondence"
TOPICS = [f"altinn.correspondence.type{n}" for n in range(18)]


def bytes_per_entry(entries: int) -> float:
    """Traced bytes held by a full window of ``entries`` keys, per key."""
    now = time.time()
    keys = [dedupe_key(SOURCE, f"00000000-0000-0000-0000-{n:012d}") for n in range(entries)]
    tracemalloc.start()
    window = Dedupe(window_s=48 * 3600, max_entries=entries)
    for n, key in enumerate(keys):
        # Offsets beyond the small-int cache, as in a long-lived topic.
        window.remember(key, Seen(now, TOPICS[n % len(TOPICS)], n % 3, 10_000_000 + n))
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Keys come from the request (hashed per event); count them as the window's.
    return held / entries + sys.getsizeof(keys[0])


def main() -> int:
    """Print the measured cost."""
    entries = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    per_entry = bytes_per_entry(entries)
    print(f"{entries} entries: {per_entry:.0f} bytes per entry (key included)")
    print(f"BRIDGE_DEDUPE_MAX_ENTRIES=500000 -> about {per_entry * 500_000 / 2**20:.0f} MiB when full")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make bench``: the performance benchmark of the bridge (see docs/performance.md).

Not part of the package or of ``make test``: it reports numbers, the tests check behaviour.
"""

import sys


def say(line: str = "") -> None:
    """One line of the bench's output, flushed at once (the bench runs for minutes)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

"""CPU per request log line: ``python -m bench.log_line [--uncached]``.

Writes 20,000 lines shaped like the bridge's request line (a UUID event id, a
token fingerprint, topic, partition, offset) to /dev/null through the bridge's
own logging setup, and prints the microseconds per line.
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

from bridge.config import LogLevel
from bridge.logs import configure_logging, get_logger

LINES = 20_000


def main() -> None:
    """Print µs per line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uncached", action="store_true", help="as the test suite configures structlog")
    args = parser.parse_args()
    with Path("/dev/null").open("wb") as sink:
        configure_logging(LogLevel.INFO, stream=sink, cache_loggers=not args.uncached)
        log = get_logger("bridge.http")
        ids = [str(uuid.uuid4()) for _ in range(LINES)]
        started = time.perf_counter()
        for event_id in ids:
            log.info(
                "request",
                method="POST",
                route="/api/v1/events/{token}",
                status=200,
                duration_ms=1.234,
                token="ab12cd34",  # noqa: S106 - a fingerprint, as logged
                outcome="published",
                event_id=event_id,
                event_type="no.altinn.correspondence.published",
                topic="altinn.correspondence.correspondencepublished",
                partition=1,
                offset=12345,
            )
        elapsed = time.perf_counter() - started
    print(f"{elapsed / LINES * 1e6:.1f} us per request log line")  # noqa: T201 - the tool's output


if __name__ == "__main__":
    main()

"""Instructions per event on the event route, counted by valgrind's callgrind (noise-free).

``python -m bench.instructions [--events N]`` runs this module twice under
``valgrind --tool=callgrind``: once posting a few events, once posting ``N`` more, and
prints the difference per event, so interpreter start-up and imports cancel out.

What runs is the real app (``create_app``: middlewares, auth, admission, parsing,
filters, the dedupe window in memory, routing, metrics, the JSON log line to
/dev/null) behind aiohttp's real server on 127.0.0.1, with a client in the same
loop sending one event per request on a keep-alive connection. Only Kafka is a
stub that acknowledges at once, so the count is the bridge's own work (and the
client's, the same for every version). Instruction counts do not move with the
machine's load; timings here vary by tens of percent.

To count another version of the bridge (a ``git worktree`` of an older commit, say),
``--bridge /path/to/that/checkout`` imports ``bridge`` from there instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

#: The event posted (a real Altinn Correspondence event, ~0.5 KiB).
EVENT = (
    Path(__file__).resolve().parents[1] / "tests/fixtures/altinn-events/valid/06-correspondencepublished.json"
)
_WARM_UP = 50


class _Kafka:
    """Acknowledges every record at once."""

    def __init__(self) -> None:
        self.offset = 0

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to flush."""

    async def check(self, timeout_s: float) -> None:
        """Always reachable."""

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: object) -> object:  # noqa: ARG002
        """The record's place, at once."""
        from bridge.publisher import Delivery  # noqa: PLC0415 - the version under test

        self.offset += 1
        return Delivery(topic, 0, self.offset)


async def _post_events(count: int) -> None:
    from aiohttp import web  # noqa: PLC0415

    from bridge.app import create_app  # noqa: PLC0415 - the version PYTHONPATH points at
    from bridge.config import LogLevel, Settings  # noqa: PLC0415
    from bridge.logs import configure_logging  # noqa: PLC0415

    with Path(os.devnull).open("wb") as sink:  # noqa: ASYNC230 - /dev/null, once, before serving
        configure_logging(LogLevel.INFO, sink, cache_loggers=True)
        settings = Settings.from_env(
            {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "BRIDGE_AUTH": "none", "BRIDGE_DEDUPE": "memory"}
        )
        runner = web.AppRunner(create_app(settings, publisher=_Kafka()), access_log=None)  # type: ignore[arg-type]
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        template = EVENT.read_bytes()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for n in range(_WARM_UP + count):
                # A new id per event, so every one is published (none is a duplicate).
                body = re.sub(rb'"id": "[^"]+"', b'"id": "bench-%08d"' % n, template, count=1)
                writer.write(
                    b"POST /api/v1/events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head.decode(errors="replace"))
                length = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
        finally:
            writer.close()
            await runner.cleanup()


def _count(events: int, checkout: str) -> int:
    """Instructions callgrind counts for a whole run posting ``events`` (after the warm-up)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={out}"]
        command += [sys.executable, "-m", __spec__.name, "--run", str(events), "--bridge", checkout]
        done = subprocess.run(command, check=False, capture_output=True)  # noqa: S603 - valgrind on this module
        if done.returncode:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-15:]
            raise SystemExit("the counted run failed:\n" + "\n".join(tail))
        summary = next(
            line for line in out.read_text().splitlines() if line.startswith(("summary:", "totals:"))
        )
        return int(summary.split()[1])


def main() -> int:
    """Count, or (``--run N``) be the program counted."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000, help="events in the measured difference")
    parser.add_argument(
        "--bridge", default=str(Path(__file__).resolve().parents[1]), help="checkout to count"
    )
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, args.bridge)
    if args.run is not None:
        asyncio.run(_post_events(args.run))
        return 0
    import bridge  # noqa: PLC0415

    few, many = _count(100, args.bridge), _count(100 + args.events, args.bridge)
    per_event = (many - few) / args.events
    where = Path(bridge.__file__).parent
    print(f"bridge from {where}: {per_event:,.0f} instructions per event ({args.events} events)")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())

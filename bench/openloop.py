"""A fixed-rate (open-loop) HTTP client, for latency at a given load.

``python -m bench.openloop URL --rate R --duration S [--template FILE]``

Request *n* is due at ``start + n / rate`` whatever happened before (wrk, a
closed loop, would wait for answers and hide queueing). Requests go out on
``--connections`` keep-alive connections; when all are busy a due request waits
for one, and its latency still counts from its due time, so a slow server (or
a slow client) shows up in the percentiles instead of lowering the rate.

With ``--template`` it POSTs events like bench/events.lua does (a unique id each);
without, it GETs the URL (the light ``/healthz`` client during overload).
Prints one line ``BENCH_JSON {...}``: counts, statuses, latency percentiles, and
``late_p99_ms`` — how late the client itself sent, to show it is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

#: Seconds to wait for answers still outstanding when the run ends.
DRAIN_S = 10.0
#: Seconds a connection attempt may take.
CONNECT_TIMEOUT_S = 5.0
_HEADER_END = b"\r\n\r\n"


@dataclass
class Stats:
    """Latencies and counts of the measured part of the run."""

    latencies_ms: list[float] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    errors: int = 0


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request outstanding."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[int] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - TCP transports are
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        self._buffer += data
        end = self._buffer.find(_HEADER_END)
        if end < 0 or self._answer is None:
            return
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self._buffer) < end + 4 + length:
            return
        del self._buffer[: end + 4 + length]
        if not self._answer.done():
            self._answer.set_result(int(head[0].split()[1]))

    async def send(self, request: bytes) -> int:
        """Send ``request`` and wait for the answer's status code."""
        if self.transport is None or self.closed.done():
            raise ConnectionError("connection closed")
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._answer


class Client:
    """The connections, the pacing and the statistics."""

    def __init__(self, url: str, connections: int, template: bytes | None) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.size = connections
        self.template = template
        self.nonce = secrets.token_hex(4)
        self.counter = 0
        self.idle: collections.deque[Connection] = collections.deque()
        self.waiting: collections.deque[float] = collections.deque()
        self.stats = Stats()
        self.measure_from = 0.0
        self.outstanding = 0

    def request(self) -> bytes:
        """The next request's bytes (a unique event id each)."""
        if self.template is None:
            return f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()
        self.counter += 1
        event_id = f"{self.nonce}-0bec-4fff-b898-{self.counter:012x}"
        body = self.template.replace(b"__ID__", event_id.encode())
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def connect(self) -> Connection:
        """A new connection."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, protocol = await loop.create_connection(Connection, self.host, self.port)
        return protocol

    async def exchange(self, connection: Connection, due: float) -> None:
        """Send one request due at ``due``; hand the connection on to the next waiting request."""
        loop = asyncio.get_running_loop()
        self.outstanding += 1
        measured = due >= self.measure_from
        try:
            while True:
                try:
                    if connection.closed.done():
                        connection = await self.connect()
                    status = await connection.send(self.request())
                except (ConnectionError, OSError, TimeoutError):
                    if measured:
                        self.stats.errors += 1
                    try:
                        connection = await self.connect()
                    except (OSError, TimeoutError):
                        return  # the pool shrinks; the errors are counted
                else:
                    if measured:
                        self.stats.statuses[status] += 1
                        self.stats.latencies_ms.append((loop.time() - due) * 1000)
                if not self.waiting:
                    self.idle.append(connection)
                    return
                due = self.waiting.popleft()
                measured = due >= self.measure_from
        finally:
            self.outstanding -= 1

    async def run(self, rate: float, duration_s: float, warmup_s: float) -> dict[str, object]:
        """Send at ``rate`` for ``warmup_s + duration_s``; statistics of the last ``duration_s``."""
        loop = asyncio.get_running_loop()
        self.idle.extend(await asyncio.gather(*(self.connect() for _ in range(self.size))))
        tasks: set[asyncio.Task[None]] = set()
        start = loop.time() + 0.05
        self.measure_from = start + warmup_s
        end = self.measure_from + duration_s
        interval = 1.0 / rate
        n = 0
        while (due := start + n * interval) < end:
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            # Everything due by now goes out (sleep granularity is coarser than the interval).
            while (due := start + n * interval) <= (now := loop.time()) and due < end:
                n += 1
                if due >= self.measure_from:
                    # The client's own lag: how late it noticed a request was due.
                    self.stats.late_ms.append((now - due) * 1000)
                if self.idle:
                    task = asyncio.create_task(self.exchange(self.idle.popleft(), due))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    self.waiting.append(due)
        measured_sent = n - int(warmup_s * rate)
        drain_until = loop.time() + DRAIN_S
        while (self.outstanding or self.waiting) and loop.time() < drain_until:  # noqa: ASYNC110 - a bounded end-of-run wait
            await asyncio.sleep(0.01)
        unanswered = self.outstanding + len(self.waiting)
        for task in tasks:
            task.cancel()
        return self.summary(rate, duration_s, measured_sent, unanswered)

    def summary(self, rate: float, duration_s: float, sent: int, unanswered: int) -> dict[str, object]:
        """The result line's content."""
        lat = sorted(self.stats.latencies_ms)
        late = sorted(self.stats.late_ms)
        ok = sum(n for status, n in self.stats.statuses.items() if 200 <= status < 300)  # noqa: PLR2004
        answered = sum(self.stats.statuses.values())
        return {
            "rate": rate,
            "sent_per_s": round(sent / duration_s, 1),
            "requests": answered,
            "duration_s": duration_s,
            "non_2xx": answered - ok,
            "errors": self.stats.errors,
            "unanswered": unanswered,
            "statuses": {str(k): v for k, v in sorted(self.stats.statuses.items())},
            "p50_ms": _pct(lat, 50),
            "p95_ms": _pct(lat, 95),
            "p99_ms": _pct(lat, 99),
            "max_ms": round(lat[-1], 3) if lat else 0.0,
            "late_p99_ms": _pct(late, 99),
        }


def _pct(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    # Nearest rank, as wrk reports its percentiles.
    index = min(len(sorted_values), max(1, math.ceil(pct / 100 * len(sorted_values)))) - 1
    return round(sorted_values[index], 3)


def main() -> int:
    """Parse the command line, run, print the result line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--template", type=Path, help="event with __ID__ for its id; POST it")
    args = parser.parse_args()
    template = args.template.read_bytes() if args.template else None
    client = Client(args.url, args.connections, template)
    started = time.monotonic()
    result = asyncio.run(client.run(args.rate, args.duration, args.warmup))
    result["took_s"] = round(time.monotonic() - started, 2)
    sys.stdout.write("BENCH_JSON " + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

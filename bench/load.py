"""The HTTP load client of the bench (fixed rate) and of the fault scenarios (tests/faults).

``python -m bench.load URL --rate R --duration S [--warmup W] [--connections N] [--template FILE]``

At most ``connections`` keep-alive HTTP/1.1 connections, one request at a time on each.
:meth:`Load.open_loop` sends request *n* at ``start + n / rate`` whatever happened before (wrk,
a closed loop, would hide queueing); a request due while every connection is busy waits for one,
its latency still counted from its due time. With a template (``__ID__`` where the id goes) it
POSTs a unique id each, as bench/events.lua does; without, it GETs the URL. The command prints
``BENCH_JSON {...}``: counts, latency percentiles and ``late_p99_ms`` (how late the client sent:
it is not the bottleneck). tests/faults/accounting.py keeps every body and answer on top.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import sys
import time
from collections import Counter, deque
from pathlib import Path
from urllib.parse import urlsplit

#: Seconds to wait for answers still outstanding when a run without a request timeout ends.
DRAIN_S = 10.0
#: Seconds a connection attempt may take.
CONNECT_TIMEOUT_S = 5.0
#: What a connection failure or a timeout is recorded as, instead of a status.
ERROR = "error"
_LENGTH = b"\r\ncontent-length:"
#: What to send: None for a new event (or the GET), else ``(event_id, body)``.
Item = tuple[str, bytes] | None


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request outstanding."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - TCP transports are
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self.closed = True
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:  # noqa: D102
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._answer is None:
            return
        head = bytes(self._buffer[:end])
        at = head.lower().find(_LENGTH)
        length = int(head[at + len(_LENGTH) :].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self._buffer) < end + 4 + length:
            return
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        if not self._answer.done():
            self._answer.set_result((int(head[9:12]), head, body))

    async def send(self, request: bytes) -> tuple[int, bytes, bytes]:
        """Send ``request``; the answer's status, head and body."""
        if self.transport is None or self.closed:
            raise ConnectionError("connection closed")
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._answer

    def close(self) -> None:  # noqa: D102
        if self.transport is not None:
            self.transport.abort()


class Load:
    """Requests to ``url`` on up to ``connections`` connections; counts and latencies of the answers."""

    def __init__(
        self,
        url: str,
        *,
        connections: int = 64,
        template: bytes | None = None,
        timeout_s: float | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
        self.template, self.timeout_s = template, timeout_s
        self.nonce, self.counter = secrets.token_hex(4), 0
        #: One entry per connection not in use: the connection, or None where one is to be opened.
        self._idle: deque[Connection | None] = deque([None] * connections)
        self._waiting: deque[tuple[float, Item]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._outstanding = 0
        self._measure_from = 0.0
        #: Requests given up on when the last :meth:`drain` ended.
        self.unanswered = 0
        self.statuses: Counter[int | str] = Counter()
        self.latencies_ms: list[float] = []
        self.late_ms: list[float] = []

    def new_event(self) -> tuple[str, bytes]:
        """A new event id and its body (the template with that id)."""
        assert self.template is not None  # noqa: S101 - only asked for with a template
        self.counter += 1
        event_id = f"{self.nonce}-0bec-4fff-b898-{self.counter:012x}"
        return event_id, self.template.replace(b"__ID__", event_id.encode())

    def request(self, item: Item) -> tuple[str, bytes]:
        """The event id and the bytes of the request for ``item``."""
        if self.template is None and item is None:
            return "", f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()
        event_id, body = item or self.new_event()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return event_id, head.encode() + body

    def record(self, event_id: str, due: float, status: int | str, head: bytes, body: bytes) -> None:  # noqa: ARG002 - for subclasses
        """Count one measured request (``status`` is :data:`ERROR` when it failed)."""
        self.statuses[status] += 1
        if status != ERROR:
            self.latencies_ms.append((time.monotonic() - due) * 1000)

    async def connect(self) -> None:
        """Open every connection now (instead of on first use)."""
        self._idle = deque(await asyncio.gather(*(self._connect() for _ in self._idle)))

    async def _connect(self) -> Connection:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, connection = await asyncio.get_running_loop().create_connection(
                Connection, self.host, self.port
            )
        return connection

    async def exchange(self, connection: Connection | None, item: Item, due: float) -> Connection | None:
        """One request due at ``due``, recorded; the connection to use next (None if it broke)."""
        event_id, request = self.request(item)
        status: int | str
        try:
            if connection is None or connection.closed:
                connection = await self._connect()
            async with asyncio.timeout(self.timeout_s):
                status, head, body = await connection.send(request)
        except (ConnectionError, OSError, TimeoutError):
            if connection is not None:
                connection.close()
            connection, status, head, body = None, ERROR, b"", b""
        if due >= self._measure_from:
            self.record(event_id, due, status, head, body)
        return connection

    async def _lane(self, connection: Connection | None, due: float, item: Item) -> None:
        """Send, then take the next waiting request on the same connection, until none waits."""
        try:
            while True:
                connection = await self.exchange(connection, item, due)
                if not self._waiting:
                    self._idle.append(connection)
                    return
                due, item = self._waiting.popleft()
        finally:
            self._outstanding -= 1

    def submit(self, due: float, item: Item = None) -> None:
        """Send ``item`` on a free connection, or as soon as one is free."""
        if not self._idle:
            self._waiting.append((due, item))
            return
        self._outstanding += 1
        task = asyncio.create_task(self._lane(self._idle.popleft(), due, item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def open_loop(
        self, rate: float, duration_s: float, *, warmup_s: float = 0.0, stop: asyncio.Event | None = None
    ) -> int:
        """Send at ``rate`` for ``warmup_s + duration_s`` (or until ``stop``), then :meth:`drain`.

        The last ``duration_s`` are measured; returns how many requests were due in them.
        """
        start = time.monotonic() + 0.05
        self._measure_from = start + warmup_s
        end = self._measure_from + duration_s
        n = 0
        while (due := start + n / rate) < end and not (stop is not None and stop.is_set()):
            if due > (now := time.monotonic()):
                await asyncio.sleep(due - now)
            # Everything due by now goes out (sleep granularity is coarser than the interval).
            while (due := start + n / rate) <= (now := time.monotonic()) and due < end:
                n += 1
                if due >= self._measure_from:
                    self.late_ms.append((now - due) * 1000)  # the client's own lag
                self.submit(due)
        await self.drain()
        return n - int(warmup_s * rate)

    async def drain(self) -> None:
        """Wait for the requests outstanding, then close the connections.

        Each request is bounded by ``timeout_s``; without one, the wait by :data:`DRAIN_S`.
        """
        until = time.monotonic() + DRAIN_S
        while (self._outstanding or self._waiting) and (self.timeout_s or time.monotonic() < until):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        self.unanswered = self._outstanding + len(self._waiting)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._waiting.clear()
        for connection in self._idle:
            if connection is not None:
                connection.close()
        self._idle = deque([None] * len(self._idle))

    def summary(self, rate: float, duration_s: float, sent: int) -> dict[str, object]:
        """The ``BENCH_JSON`` line's content."""
        lat = sorted(self.latencies_ms)
        answered = {k: v for k, v in self.statuses.items() if k != ERROR}
        ok = sum(n for status, n in answered.items() if 200 <= int(status) < 300)  # noqa: PLR2004
        return {
            "rate": rate,
            "sent_per_s": round(sent / duration_s, 1),
            "requests": sum(answered.values()),
            "duration_s": duration_s,
            "non_2xx": sum(answered.values()) - ok,
            "errors": self.statuses[ERROR],
            "unanswered": self.unanswered,
            "statuses": {str(k): v for k, v in sorted(answered.items())},
            **{f"p{pct}_ms": percentile(lat, pct) for pct in (50, 95, 99)},
            "max_ms": round(lat[-1], 3) if lat else 0.0,
            "late_p99_ms": percentile(self.late_ms, 99),
        }


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``values``, nearest rank as wrk reports it; 0 for none."""
    ordered, n = sorted(values), len(values)
    return round(ordered[min(n, max(1, math.ceil(pct / 100 * n))) - 1], 3) if values else 0.0


async def _run(args: argparse.Namespace) -> dict[str, object]:
    load = Load(args.url, connections=args.connections, template=args.template and args.template.read_bytes())
    await load.connect()
    sent = await load.open_loop(args.rate, args.duration, warmup_s=args.warmup)
    return load.summary(args.rate, args.duration, sent)


def main() -> int:
    """Parse the command line, run, print the result line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--template", type=Path, help="event with __ID__ for its id; POST it")
    started, result = time.monotonic(), asyncio.run(_run(parser.parse_args()))
    result["took_s"] = round(time.monotonic() - started, 2)
    sys.stdout.write("BENCH_JSON " + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

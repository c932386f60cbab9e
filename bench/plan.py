"""What one bench run does: durations, connections, pinning — from ``BENCH_*`` variables."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The bridge's default ``BRIDGE_MAX_IN_FLIGHT``; the overload run opens 3x as many connections.
BRIDGE_MAX_IN_FLIGHT = 512
#: The bridge reads at most this many batches at once; more batch connections would measure its
#: 503 answers instead of its throughput.
BRIDGE_MAX_BATCHES_IN_FLIGHT = 4

#: Every variable the bench reads, with its meaning (printed by ``python -m bench --help``).
VARIABLES = {
    "BENCH_QUICK": "1: short durations, for trying the bench out (about 3 minutes)",
    "BENCH_DURATION_S": "measured seconds of each throughput row run (full 10, quick 4)",
    "BENCH_REPEAT": "runs of each throughput row, interleaved; the median is reported (full 3, quick 1)",
    "BENCH_WARMUP_S": "unmeasured seconds of load before each measurement (full 5, quick 2)",
    "BENCH_FIXED_RATE_S": "measured seconds of each fixed-rate latency run (full 20, quick 4)",
    "BENCH_SOAK_S": "seconds of the soak at half load (full 300, quick 15)",
    "BENCH_OVERLOAD_S": "seconds of the overload run (full 30, quick 5)",
    "BENCH_CONNECTIONS": "connections of every single-event row and fixed-rate run (64)",
    "BENCH_BATCH_SIZE": "events per batch request in the batch rows (100)",
    "BENCH_OVERLOAD_CONNECTIONS": "connections of the overload run (1536 = 3 x BRIDGE_MAX_IN_FLIGHT)",
    "BENCH_WORKERS": "worker counts to measure, comma-separated (1,2)",
    "BENCH_PIN": "1: pin servers and load to separate CPUs (see docs/performance.md); 0: let them float",
    "BENCH_PROFILE": "1: also record py-spy profiles of the bridge under load (needs py-spy)",
    "BENCH_ONLY": "run only these parts, comma-separated: row keys (c1,a1,...), rows, fixed, soak, overload",
    "BENCH_LOOP": "event loop of the comparison servers: auto (the bridge's), asyncio or uvloop",
    "BENCH_BRIDGE_ENV": "extra settings for the bridge rows, e.g. 'KAFKA_LINGER_MS=2' (default: none)",
}


@dataclass(frozen=True)
class Plan:
    """Parameters of one run; the same load for every row that is compared."""

    quick: bool
    duration_s: float
    repeat: int
    warmup_s: float
    fixed_rate_s: float
    soak_s: float
    overload_s: float
    connections: int
    batch_size: int
    overload_connections: int
    workers: tuple[int, ...]
    pin: bool
    profile: bool
    bridge_env: dict[str, str] = field(default_factory=dict)
    #: Event loop of rows a and b: ``auto`` (whatever the bridge runs on), ``asyncio``, ``uvloop``.
    loop: str = "auto"
    #: Parts to run (empty: all): row keys like ``c1``, ``rows``, ``fixed``, ``soak``, ``overload``.
    only: frozenset[str] = frozenset()
    #: Connections of the batch rows: what the bridge admits at once.
    batch_connections: int = BRIDGE_MAX_BATCHES_IN_FLIGHT
    #: Requests per second of the light ``/healthz`` client during overload.
    healthz_rate: float = 20.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Plan:
        """The plan ``BENCH_*`` variables ask for."""

        def flag(name: str, *, default: bool) -> bool:
            raw = env.get(name, "").strip().lower()
            return raw in ("1", "true", "yes", "on") if raw else default

        def number(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            try:
                value = float(raw) if raw else default
            except ValueError:
                raise SystemExit(f"bench: {name}={raw!r} is not a number") from None
            if value <= 0:
                raise SystemExit(f"bench: {name} must be positive")
            return value

        quick = flag("BENCH_QUICK", default=False)
        loop = env.get("BENCH_LOOP", "").strip().lower() or "auto"
        if loop not in ("auto", "asyncio", "uvloop"):
            raise SystemExit("bench: BENCH_LOOP must be one of auto, asyncio, uvloop")
        workers = tuple(int(w) for w in env.get("BENCH_WORKERS", "1,2").split(",") if w.strip())
        return cls(
            quick=quick,
            duration_s=number("BENCH_DURATION_S", 4 if quick else 10),
            repeat=int(number("BENCH_REPEAT", 1 if quick else 3)),
            warmup_s=number("BENCH_WARMUP_S", 2 if quick else 5),
            fixed_rate_s=number("BENCH_FIXED_RATE_S", 4 if quick else 20),
            soak_s=number("BENCH_SOAK_S", 15 if quick else 300),
            overload_s=number("BENCH_OVERLOAD_S", 5 if quick else 30),
            connections=int(number("BENCH_CONNECTIONS", 64)),
            batch_size=int(number("BENCH_BATCH_SIZE", 100)),
            overload_connections=int(number("BENCH_OVERLOAD_CONNECTIONS", 3 * BRIDGE_MAX_IN_FLIGHT)),
            workers=workers or (1,),
            pin=flag("BENCH_PIN", default=True),
            profile=flag("BENCH_PROFILE", default=False),
            bridge_env=dict(item.split("=", 1) for item in shlex.split(env.get("BENCH_BRIDGE_ENV", ""))),
            loop=loop,
            only=frozenset(p.strip() for p in env.get("BENCH_ONLY", "").split(",") if p.strip()),
        )

    def runs(self, part: str) -> bool:
        """True if ``part`` (a row key like ``c1``, or ``fixed``, ``soak``, ``overload``) is to run."""
        return not self.only or part in self.only or (len(part) == 2 and "rows" in self.only)  # noqa: PLR2004

    def cpus(self, workers: int) -> tuple[set[int] | None, set[int] | None]:
        """CPUs for (the server, everything else) with ``workers`` server processes.

        Pinned when at least one CPU is left for the load generator and broker: the server gets
        the last ``workers`` CPUs, the rest the others. With as many workers as CPUs nothing is
        pinned (None: every CPU).
        """
        total = os.cpu_count() or 1
        if not self.pin or total - workers < 1:
            return None, None
        return set(range(total - workers, total)), set(range(total - workers))

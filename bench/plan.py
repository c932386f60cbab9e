"""What one bench run does: durations, repetitions, parts — from ``BENCH_*`` variables."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Every variable the bench reads, with its meaning (printed by ``python -m bench --help``).
VARIABLES = {
    "BENCH_QUICK": "1: short durations, for trying the bench out (about 3 minutes)",
    "BENCH_REPEAT": "runs of each throughput row, interleaved; the median is reported (full 3, quick 1)",
    "BENCH_DURATION_S": "measured seconds of each throughput row run (full 10, quick 4)",
    "BENCH_FIXED_RATE_S": "measured seconds of each fixed-rate latency run (full 20, quick 4)",
    "BENCH_SOAK_S": "seconds of the soak at half load (full 300, quick 15); it must fill the window",
    "BENCH_PROFILE": "1: also record py-spy profiles of c1 and d1 under load (needs py-spy)",
    "BENCH_ONLY": "run only these parts, comma-separated: a1, b1, c1, d1, fixed, soak",
    "BENCH_BRIDGE_ENV": "extra settings for the bridge rows, e.g. 'KAFKA_LINGER_MS=2' (default: none)",
}
#: Keep-alive connections of every single-event row and fixed-rate run.
CONNECTIONS = 64
#: Events per request in row d, on as many connections as the bridge reads batches at once
#: (more would measure its 503 answers instead of its throughput).
BATCH_SIZE, BATCH_CONNECTIONS = 100, 4


@dataclass(frozen=True)
class Plan:
    """Parameters of one run; the same load for every row that is compared."""

    quick: bool
    repeat: int
    duration_s: float
    warmup_s: float
    fixed_rate_s: float
    soak_s: float
    profile: bool
    bridge_env: dict[str, str] = field(default_factory=dict)
    #: Parts to run (empty: all): row keys like ``c1``, ``fixed``, ``soak``.
    only: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Plan:
        """The plan ``BENCH_*`` variables ask for."""

        def number(name: str, full: float, quick: float) -> float:
            raw = env.get(name, "").strip()
            try:
                value = float(raw) if raw else (quick if is_quick else full)
            except ValueError:
                raise SystemExit(f"bench: {name}={raw!r} is not a number") from None
            if value <= 0:
                raise SystemExit(f"bench: {name} must be positive")
            return value

        is_quick = env.get("BENCH_QUICK", "").strip().lower() in ("1", "true", "yes")
        return cls(
            quick=is_quick,
            repeat=int(number("BENCH_REPEAT", 3, 1)),
            duration_s=number("BENCH_DURATION_S", 10, 4),
            warmup_s=2 if is_quick else 5,
            fixed_rate_s=number("BENCH_FIXED_RATE_S", 20, 4),
            soak_s=number("BENCH_SOAK_S", 300, 15),
            profile=env.get("BENCH_PROFILE", "").strip().lower() in ("1", "true", "yes"),
            bridge_env=dict(item.split("=", 1) for item in shlex.split(env.get("BENCH_BRIDGE_ENV", ""))),
            only=frozenset(p.strip() for p in env.get("BENCH_ONLY", "").split(",") if p.strip()),
        )

    def runs(self, part: str) -> bool:
        """True if ``part`` (a row key like ``c1``, or ``fixed``, ``soak``) is to run."""
        return not self.only or part in self.only


def cpus() -> tuple[set[int] | None, set[int] | None]:
    """CPUs for (the one-worker server, everything else): the last CPU, and the others.

    Pinned so that the server is limited by itself, not by the load generator or the broker, and
    one worker is on one core. On a one-CPU machine nothing is pinned (None: every CPU).
    """
    total = os.cpu_count() or 1
    return (None, None) if total < 2 else ({total - 1}, set(range(total - 1)))  # noqa: PLR2004

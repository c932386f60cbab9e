"""The load generators as pinned processes: wrk (closed loop, maximum throughput) and bench.load.

wrk comes from Debian (``apt-get install wrk``); its Lua script (``events.lua``) gives every event a
unique id. hey, the other Debian option, sends one fixed body, so every request after the first
would be a duplicate for the bridge. Both print one ``BENCH_JSON {...}`` line with the same keys.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import say
from bench.procs import cpu_affinity

LUA_SCRIPT = Path(__file__).resolve().parent / "events.lua"
#: Seconds past the planned duration after which a load generator counts as hung.
HANG_MARGIN_S = 30.0
MARKER = "BENCH_JSON "


def ensure_wrk() -> str:
    """Path of ``wrk``, installed from Debian with apt-get when missing (idempotent)."""
    if found := shutil.which("wrk"):
        return found
    apt_get, apt_cache = shutil.which("apt-get"), shutil.which("apt-cache")
    if apt_get is None or apt_cache is None:
        raise RuntimeError("wrk is not installed and there is no apt-get here: install wrk 4.x yourself")
    sudo = [] if os.geteuid() == 0 else [shutil.which("sudo")]
    if None in sudo:
        raise RuntimeError("wrk is not installed: run `apt-get install -y wrk` as root")
    policy = subprocess.run([apt_cache, "policy", "wrk"], capture_output=True, text=True, check=False)  # noqa: S603
    say("wrk not found; installing it from Debian (apt-get update && apt-get install -y wrk)")
    say(policy.stdout.strip())
    subprocess.run([*sudo, apt_get, "update"], check=True)  # noqa: S603
    subprocess.run([*sudo, apt_get, "install", "-y", "wrk"], check=True)  # noqa: S603
    if (found := shutil.which("wrk")) is None:
        raise RuntimeError("apt-get install wrk did not put wrk on PATH")
    return found


def wrk_version(wrk: str) -> str:
    """``wrk 4.1.0 [epoll]`` (wrk -v prints it and exits 1)."""
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
    return (out.stdout or out.stderr).splitlines()[0].split(" Copyright")[0].strip()


@dataclass(frozen=True)
class LoadResult:
    """What a load generator saw, plus its own CPU time."""

    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    timeouts: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    cpu_s: float
    extra: dict[str, object]

    @classmethod
    def from_json(cls, r: dict[str, Any], cpu_s: float, **extra: object) -> LoadResult:
        """From a ``BENCH_JSON`` line's content (bench.load's extra keys kept in ``extra``)."""
        return cls(
            requests=int(r["requests"]),
            duration_s=float(r["duration_s"]),
            non_2xx=int(r["non_2xx"]),
            socket_errors=int(r["errors"]),
            timeouts=int(r["unanswered"]),
            p50_ms=float(r["p50_ms"]),
            p95_ms=float(r["p95_ms"]),
            p99_ms=float(r["p99_ms"]),
            max_ms=float(r["max_ms"]),
            cpu_s=cpu_s,
            extra={k: r[k] for k in ("rate", "sent_per_s", "late_p99_ms", "statuses") if k in r} | extra,
        )

    @property
    def ok(self) -> int:
        """Requests answered 2xx."""
        return self.requests - self.non_2xx

    @property
    def ok_per_s(self) -> float:
        """2xx answers per second."""
        return self.ok / self.duration_s if self.duration_s else 0.0


def marker_json(output: str, what: str) -> dict[str, Any]:
    """The ``BENCH_JSON`` line of ``output``."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            parsed: dict[str, Any] = json.loads(line[len(MARKER) :])
            return parsed
    raise RuntimeError(f"{what} printed no result:\n{output[-2000:]}")


def _run(
    command: list[str], cpus: set[int] | None, timeout_s: float, tick: Callable[[], None] | None
) -> LoadResult:
    """Run ``command`` on ``cpus`` to completion; its result line and CPU seconds (its reaped usage).

    ``tick`` is called about once a second while it runs (e.g. to sample memory).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as out:
        with cpu_affinity(cpus):
            process = subprocess.Popen(  # noqa: S603 - our own command, no shell
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout_s
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"{Path(command[0]).name} hung; killed")
            if tick is not None:
                tick()
            time.sleep(1.0 if tick is not None else 0.1)
        out.seek(0)
        output = out.read().decode(errors="replace")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} exited {process.returncode}:\n{output[-2000:]}")
    cpu_s = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return LoadResult.from_json(marker_json(output, Path(command[0]).name), cpu_s)


def run_wrk(
    wrk: str,
    url: str,
    *,
    template: Path,
    batch: int,
    connections: int,
    duration_s: float,
    cpus: set[int] | None,
    timeout_s: float = 5.0,
    tick: Callable[[], None] | None = None,
) -> LoadResult:
    """One closed-loop wrk run (one thread, ``connections`` connections)."""
    options = [
        "-t1",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(LUA_SCRIPT),
    ]
    command = [wrk, *options, url, "--", str(template), str(batch), secrets.token_hex(4)]
    result = _run(command, cpus, duration_s + HANG_MARGIN_S, tick)
    result.extra["command"] = " ".join([wrk, *options, "<url>", "--", "<template>", str(batch), "<nonce>"])
    return result


def run_load(
    url: str,
    *,
    rate: float,
    duration_s: float,
    warmup_s: float,
    connections: int,
    cpus: set[int] | None,
    template: Path | None,
    tick: Callable[[], None] | None = None,
) -> LoadResult:
    """A fixed-rate run of :mod:`bench.load` (latency counted from each request's due time)."""
    command = [sys.executable, "-m", "bench.load", url, f"--rate={rate:g}", f"--duration={duration_s:g}"]
    command += [f"--warmup={warmup_s:g}", f"--connections={connections}"]
    command += [f"--template={template}"] if template is not None else []
    return _run(command, cpus, warmup_s + duration_s + HANG_MARGIN_S, tick)

"""The load generators: wrk (closed loop, maximum throughput) and :mod:`bench.openloop`.

wrk comes from Debian (``apt-get install wrk``); its Lua script (``events.lua``)
gives every event a unique id. hey, the other Debian option, sends one fixed
body, so every request after the first would be a duplicate for the bridge.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import cpu_affinity

HERE = Path(__file__).resolve().parent
LUA_SCRIPT = HERE / "events.lua"
#: Seconds past the planned duration after which a load generator counts as hung.
HANG_MARGIN_S = 30.0
_MARKER = "BENCH_JSON "


def say(line: str = "") -> None:
    """One line of the bench's output, flushed at once (the bench runs for minutes)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def ensure_wrk() -> str:
    """Path of ``wrk``, installed from Debian with apt-get when missing (idempotent)."""
    found = shutil.which("wrk")
    if found:
        return found
    apt_get, apt_cache = shutil.which("apt-get"), shutil.which("apt-cache")
    if apt_get is None or apt_cache is None:
        raise RuntimeError("wrk is not installed and there is no apt-get here: install wrk 4.x yourself")
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None:
            raise RuntimeError("wrk is not installed: run `apt-get install -y wrk` as root")
        prefix = [sudo]
    policy = subprocess.run([apt_cache, "policy", "wrk"], capture_output=True, text=True, check=False)  # noqa: S603
    say("wrk not found; installing it from Debian (apt-get update && apt-get install -y wrk)")
    say(policy.stdout.strip())
    subprocess.run([*prefix, apt_get, "update"], check=True)  # noqa: S603
    subprocess.run([*prefix, apt_get, "install", "-y", "wrk"], check=True)  # noqa: S603
    found = shutil.which("wrk")
    if found is None:
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

    @property
    def ok(self) -> int:
        """Requests answered 2xx."""
        return self.requests - self.non_2xx

    @property
    def ok_per_s(self) -> float:
        """2xx answers per second."""
        return self.ok / self.duration_s if self.duration_s else 0.0


def _run_and_reap(
    command: list[str], *, cpus: set[int] | None, timeout_s: float, tick: Callable[[], None] | None
) -> tuple[str, float]:
    """Run ``command`` to completion on ``cpus``; its stdout and its CPU seconds (from wait4).

    ``tick`` is called about once a second while it runs (e.g. to sample memory).
    """
    with cpu_affinity(cpus):
        process = subprocess.Popen(  # noqa: S603 - our own command, no shell
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    assert process.stdout is not None  # noqa: S101 - Popen with stdout=PIPE always has it
    os.set_blocking(process.stdout.fileno(), False)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with contextlib.suppress(BlockingIOError, TypeError):
                chunk = process.stdout.read()
                if chunk:
                    chunks.append(chunk)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{Path(command[0]).name} hung; killed")
            if tick is not None:
                tick()
            time.sleep(1.0 if tick is not None else 0.1)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
    with contextlib.suppress(BlockingIOError, TypeError):
        rest = process.stdout.read()
        if rest:
            chunks.append(rest)
    process.stdout.close()
    output = b"".join(chunks).decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} exited {process.returncode}:\n{output[-2000:]}")
    return output, usage.ru_utime + usage.ru_stime


def _marker_json(output: str, what: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith(_MARKER):
            parsed: dict[str, Any] = json.loads(line[len(_MARKER) :])
            return parsed
    raise RuntimeError(f"{what} printed no result:\n{output[-2000:]}")


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
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(template),
        str(batch),
        secrets.token_hex(4),
    ]
    output, cpu_s = _run_and_reap(command, cpus=cpus, timeout_s=duration_s + HANG_MARGIN_S, tick=tick)
    r = _marker_json(output, "wrk")
    return LoadResult(
        requests=int(r["requests"]),
        duration_s=int(r["duration_us"]) / 1e6,
        non_2xx=int(r["non_2xx_3xx"]),
        socket_errors=sum(int(r[k]) for k in ("connect_errors", "read_errors", "write_errors")),
        timeouts=int(r["timeouts"]),
        p50_ms=int(r["p50_us"]) / 1000,
        p95_ms=int(r["p95_us"]) / 1000,
        p99_ms=int(r["p99_us"]) / 1000,
        max_ms=int(r["max_us"]) / 1000,
        cpu_s=cpu_s,
        extra={"command": " ".join([*command[:7], "<url>", "--", "<template>", str(batch), "<nonce>"])},
    )


def run_openloop(
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
    """A fixed-rate run of :mod:`bench.openloop` (latency counted from each request's due time)."""
    command = [
        sys.executable,
        "-m",
        "bench.openloop",
        url,
        f"--rate={rate:g}",
        f"--duration={duration_s:g}",
        f"--warmup={warmup_s:g}",
        f"--connections={connections}",
    ]
    if template is not None:
        command.append(f"--template={template}")
    output, cpu_s = _run_and_reap(
        command, cpus=cpus, timeout_s=warmup_s + duration_s + HANG_MARGIN_S, tick=tick
    )
    return openloop_result(_marker_json(output, "openloop"), cpu_s)


def openloop_result(r: dict[str, Any], cpu_s: float) -> LoadResult:
    """A :class:`LoadResult` from the JSON :mod:`bench.openloop` prints."""
    return LoadResult(
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
        extra={k: r[k] for k in ("rate", "sent_per_s", "late_p99_ms", "statuses") if k in r},
    )

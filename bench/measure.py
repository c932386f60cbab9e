"""The measurements (throughput rows, fixed-rate latency, the soak, profiles) and their load generators.

Each returns plain data that :mod:`bench.run` prints and writes as JSON. The load generators run as
pinned processes and print one ``BENCH_JSON {...}`` line with the same keys: wrk (closed loop; from
Debian, like hey, which cannot give each event a unique id as ``events.lua`` does) and
:mod:`bench.load` (fixed rate).
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
from pathlib import Path
from typing import Any

from bench import profile, say
from bench.plan import BATCH_CONNECTIONS, BATCH_SIZE, CONNECTIONS, Plan
from bench.procs import Processes, cpu_affinity, rss_mib, system_busy_s
from bench.servers import Running, Servers

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = ROOT / "bench" / "events.lua"
#: Seconds past the planned duration after which a load generator counts as hung.
HANG_MARGIN_S = 30.0
MARKER = "BENCH_JSON "
#: Row letter: (server kind, label). Every row runs one worker.
KINDS = {
    "a": ("ceiling", "ceiling: bare aiohttp, reads body, 200"),
    "b": ("naive", "naive bridge: send_and_wait per request"),
    "c": ("bridge", "this bridge, production settings"),
    "d": ("bridge", "this bridge, batches"),
}
#: Before each measurement the bench waits (at most this long) for other load to stop...
QUIET_WAIT_S = 120.0
#: ... i.e. for the machine to be busier than this (cores) for less than a second.
QUIET_CORES = 0.15
#: What a row keeps of wrk's result.
LOAD_KEYS = ("requests", "non_2xx", "errors", "unanswered", "p50_ms", "p95_ms", "p99_ms", "max_ms")


def ensure_wrk() -> str:
    """Path of ``wrk``, installed from Debian (apt-get, as root or with sudo) when missing."""
    if not shutil.which("wrk"):
        say("wrk not found; installing it from Debian (apt-get update && apt-get install -y wrk)")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "update"], check=True)  # noqa: S603
        subprocess.run([*sudo, "apt-get", "install", "-y", "wrk"], check=True)  # noqa: S603
    return shutil.which("wrk") or "wrk"


def run_load_generator(
    command: list[str], cpus: set[int] | None, duration_s: float, tick: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Run ``command`` on ``cpus`` to completion; its ``BENCH_JSON`` result, with ``cpu_s`` and ``ok_per_s``.

    ``cpu_s`` is its CPU time (from its reaped usage); it counts as hung :data:`HANG_MARGIN_S` after
    ``duration_s``. ``tick`` is called about once a second while it runs (to sample the server).
    """
    name, before = Path(command[0]).name, resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as out:
        with cpu_affinity(cpus):
            stdio = {"stdout": out, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL}
            process = subprocess.Popen(command, **stdio)  # noqa: S603 - our own command, no shell
        deadline = time.monotonic() + duration_s + HANG_MARGIN_S
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"{name} hung; killed")
            if tick is not None:
                tick()
            time.sleep(1.0 if tick is not None else 0.1)
        out.seek(0)
        output = out.read().decode(errors="replace")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in output.splitlines() if line.startswith(MARKER)]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{name} exited {process.returncode} without a result:\n{output[-2000:]}")
    result = json.loads(lines[-1][len(MARKER) :])
    ok = result["requests"] - result["non_2xx"]
    result["ok_per_s"] = round(ok / result["duration_s"], 1) if result["duration_s"] else 0.0
    result["cpu_s"] = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return result


class Measurements:
    """Runs the plan's measurements on this machine; each returns the plain data of the JSON file."""

    def __init__(self, plan: Plan, procs: Processes, servers: Servers, wrk: str, template: Path) -> None:
        self.plan, self.procs, self.servers, self.wrk = plan, procs, servers, wrk
        #: One compact event with ``__ID__`` where its id goes (see events.lua).
        self.template = template

    def _wrk(self, run: Running, batch: int, duration_s: float) -> dict[str, Any]:
        """Closed-loop wrk (one thread) against ``run``'s event URL, ``batch`` events per request."""
        connections = BATCH_CONNECTIONS if batch > 1 else CONNECTIONS
        options = ["-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout=5s", "-s", str(LUA_SCRIPT)]
        arguments = ["--", str(self.template), str(batch), secrets.token_hex(4)]  # see events.lua
        return run_load_generator([self.wrk, *options, run.events_url, *arguments], run.load_cpus, duration_s)

    def _fixed(
        self, run: Running, rate: float, duration_s: float, tick: Callable[[], None] | None = None
    ) -> Any:
        """bench.load at ``rate`` against ``run``'s event URL, after the plan's warm-up."""
        command = [sys.executable, "-m", "bench.load", run.events_url, f"--rate={rate:g}"]
        command += [f"--duration={duration_s:g}", f"--warmup={self.plan.warmup_s:g}"]
        command += [f"--connections={CONNECTIONS}", f"--template={self.template}"]
        return run_load_generator(command, run.load_cpus, self.plan.warmup_s + duration_s, tick)

    def wait_quiet(self) -> None:
        """Wait until nothing else keeps the machine busy (other tests, builds).

        The bench's own processes are all stopped between measurements, so what is busy here is
        someone else's. Goes on after :data:`QUIET_WAIT_S` regardless; the rows' ``other`` column
        then shows the disturbance.
        """
        deadline, warned = time.monotonic() + QUIET_WAIT_S, False
        while time.monotonic() < deadline:
            before = system_busy_s()
            time.sleep(1.0)
            if (busy := system_busy_s() - before) < QUIET_CORES:
                return
            if not warned:
                say(f"  (waiting for the machine to quieten: {busy:.2f} cores busy with other work)")
            warned = True

    def row(self, letter: str) -> dict[str, Any]:
        """Row ``letter`` (a-d), one server worker, at wrk's maximum rate (closed loop)."""
        kind, label = KINDS[letter]
        if kind == "bridge" and self.plan.bridge_env:
            label = label.replace("production settings", "+ BENCH_BRIDGE_ENV")
        batch = BATCH_SIZE if letter == "d" else 1
        self.wait_quiet()
        with self.servers.scenario(f"{letter}1", kind) as run:
            self._wrk(run, batch, self.plan.warmup_s)
            before, counts = run.cpu(), run.counts()
            load = self._wrk(run, batch, self.plan.duration_s)
            usage = run.usage(before, load["cpu_s"])
            peak, after = rss_mib(run.pid, "VmHWM"), run.counts()
        events = (load["requests"] - load["non_2xx"]) * batch
        return {
            "row": f"{letter}1",
            "kind": kind,
            "label": label,
            "connections": BATCH_CONNECTIONS if batch > 1 else CONNECTIONS,
            "events_per_request": batch,
            "status": "ok",
            "requests_per_s": load["ok_per_s"],
            "events_per_s": round(load["ok_per_s"] * batch, 1),
            **{k: load[k] for k in LOAD_KEYS},
            "server_cpu_us_per_event": round(usage["server_cpu_s"] / events * 1e6, 1) if events else 0.0,
            **usage,
            "peak_rss_mib": round(peak, 1),
            # What the bridge counted by outcome (published, duplicate, ...) during the measured run.
            "bridge_counted": {k: after[k] - counts[k] for k in after if k.startswith("events.")},
        }

    def fixed_rate(self, kind: str, rate: float) -> dict[str, object]:
        """Latency of ``kind`` (one worker) at a fixed ``rate`` of single events (open loop)."""
        self.wait_quiet()
        with self.servers.scenario(f"fixed-{kind}", kind) as run:
            before = run.cpu()
            load = self._fixed(run, rate, self.plan.fixed_rate_s)
            usage = run.usage(before, load["cpu_s"])
        return {"kind": kind, "rate": round(rate, 1), **load, **usage}

    def soak(self, rate: float) -> dict[str, object]:
        """The bridge at ``rate`` for the soak's duration: RSS and the dedupe window sampled.

        The window fills (``BRIDGE_DEDUPE_MAX_ENTRIES``) when the soak is long enough; what the
        RSS grew per key it holds, and whether RSS stayed flat once it was full, are the findings.
        """
        interval_s, samples = max(1.0, self.plan.soak_s / 60), []
        self.wait_quiet()
        with self.servers.scenario("soak", "bridge") as run:
            first = previous = run.cpu()
            cap, published = run.window_cap, run.counts()["events.published"]

            def sample(*, final: bool = False) -> None:
                nonlocal previous, published
                if not final and time.monotonic() - previous[0] < interval_s:
                    return
                counts, usage, previous = run.counts(), run.usage(previous, 0.0), run.cpu()
                samples.append(
                    {
                        "t_s": round(previous[0] - first[0], 1),
                        "rss_mib": round(rss_mib(run.pid), 2),
                        "dedupe": counts["dedupe_entries"],
                        "published_per_s": round((counts["events.published"] - published) / usage["wall_s"]),
                        "server_cores": usage["server_cores"],
                        "broker_cores": usage["broker_cores"],
                    }
                )
                published = counts["events.published"]

            load = self._fixed(run, rate, self.plan.soak_s, tick=sample)
            sample(final=True)
            usage = run.usage(first, load["cpu_s"])
        # The baseline is the first sample after the warm-up (imports, buffers, the producer).
        base = next((s for s in samples if s["t_s"] >= self.plan.warmup_s + 1), samples[0])
        full, end = next((s for s in samples if s["dedupe"] >= cap), None), samples[-1]
        keys = end["dedupe"] - base["dedupe"]
        # The last fifth of the run, against the rate asked for: did the bridge keep up to the end?
        # (Not the final sample: it spans the client's end, when nothing more is sent.)
        tail = (samples[:-1] or samples)[-max(1, (len(samples) - 1) // 5) :]
        return {
            "rate": round(rate, 1),
            "seconds": self.plan.soak_s,
            **load,
            **usage,
            "published_per_s_at_end": round(sum(s["published_per_s"] for s in tail) / len(tail)),
            "window_cap": cap,
            "dedupe_entries_base": base["dedupe"],
            "dedupe_entries_end": end["dedupe"],
            "rss_base_mib": base["rss_mib"],
            "rss_base_at_s": base["t_s"],
            "window_full_at_s": full and full["t_s"],
            "rss_full_mib": full and full["rss_mib"],
            "rss_end_mib": end["rss_mib"],
            "rss_per_key_bytes": round((end["rss_mib"] - base["rss_mib"]) * 2**20 / keys) if keys else None,
            "rss_after_full_pct": full and round(100 * (end["rss_mib"] / full["rss_mib"] - 1), 1),
            "samples": samples,
        }

    def profile(self, letter: str, out_dir: Path) -> dict[str, object]:
        """A py-spy profile of the bridge under row ``letter``'s wrk load (c or d); areas printed."""
        if profile.find_pyspy() is None:
            return {"status": "py-spy not installed: .venv/bin/pip install py-spy==" + profile.PYSPY_VERSION}
        batch, name = BATCH_SIZE if letter == "d" else 1, f"profile-{letter}1"
        raw, summary = out_dir / f"{name}.txt", out_dir / f"{name}-summary.txt"
        with self.servers.scenario(name, "bridge") as run:
            self._wrk(run, batch, self.plan.warmup_s)
            recorder = profile.start(self.procs, run.pid, self.plan.duration_s, raw, run.load_cpus)
            before = run.cpu()
            load = self._wrk(run, batch, self.plan.duration_s)
            usage = run.usage(before, load["cpu_s"])
            recorder.wait(self.plan.duration_s + 60)
        events = (load["requests"] - load["non_2xx"]) * batch
        cpu_us = usage["server_cpu_s"] / events * 1e6 if events else 0.0
        text, areas = profile.summarize(raw, cpu_us)
        summary.write_text(text)
        say(f"  {name}: {load['ok_per_s'] * batch:,.0f} events/s under py-spy; {summary.relative_to(ROOT)}")
        for area, us in areas.items():
            say(f"    {us:6.1f} us/event  {area}")
        return {
            "summary": str(summary.relative_to(ROOT)),
            "events_per_s_under_profiler": round(load["ok_per_s"] * batch, 1),
            "cpu_us_per_event_under_profiler": round(cpu_us, 1),
            "areas_us_per_event": areas,
        }

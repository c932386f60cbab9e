"""The measurements: throughput rows, fixed-rate latency, soak, overload, profiles.

Each returns plain data (a :class:`Row` or a dict) that :mod:`bench.run` prints and writes as JSON.
"""

from __future__ import annotations

import functools
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import profile, say
from bench.loadgen import LoadResult, marker_json, run_load, run_wrk
from bench.plan import Plan
from bench.procs import Processes, allowed_cpus, system_busy_s
from bench.servers import Running, Servers, Usage

ROOT = Path(__file__).resolve().parent.parent
KINDS = {
    "a": ("ceiling", "ceiling: bare aiohttp, reads body, 200"),
    "b": ("naive", "naive bridge: send_and_wait per request"),
    "c": ("bridge", "this bridge, production settings"),
    "d": ("bridge", "this bridge, batches"),
}
#: wrk's per-request timeout in the overload run, where answers queue for seconds.
OVERLOAD_TIMEOUT_S = 10.0
#: Keep-alive connections of the /healthz client: enough that it never waits for one of its own.
HEALTHZ_CONNECTIONS = 16
#: Before each measurement the bench waits (at most this long) for other load to stop...
QUIET_WAIT_S = 120.0
#: ... i.e. for the machine to be busier than this (cores) for less than a second.
QUIET_CORES = 0.15
#: Nice value of the light /healthz client during overload (negative: scheduled first).
HEALTHZ_CLIENT_NICE = -10
_LOAD_KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "requests", "non_2xx", "socket_errors", "timeouts")


@dataclass
class Row:
    """One row of the table: a server kind, a worker count, and what it did under wrk."""

    key: str
    kind: str
    label: str
    workers: int
    connections: int
    batch: int
    status: str = "ok"
    load: LoadResult | None = None
    usage: Usage | None = None
    peak_rss_mib: float = 0.0
    counted: dict[str, int] = field(default_factory=dict)
    pinning: str = ""
    #: events/s of every run of this row when it was repeated (this one is the median).
    runs: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if the row was measured."""
        return self.status == "ok" and self.load is not None

    @property
    def req_per_s(self) -> float:
        """2xx answers per second."""
        return self.load.ok_per_s if self.load else 0.0

    @property
    def events_per_s(self) -> float:
        """Events accepted (2xx) per second."""
        return self.req_per_s * self.batch

    @property
    def spread_pct(self) -> float:
        """(max - min) / median of the repeated runs' events/s, in %; 0 for one run."""
        if len(self.runs) < 2 or not self.events_per_s:  # noqa: PLR2004
            return 0.0
        return 100 * (max(self.runs) - min(self.runs)) / self.events_per_s

    @property
    def cpu_us_per_event(self) -> float:
        """Server CPU (all its processes) per accepted event, in microseconds."""
        events = self.load.ok * self.batch if self.load else 0
        return self.usage.server_s / events * 1e6 if events and self.usage else 0.0

    def cores(self, who: str) -> float:
        """Cores ``server``, ``broker``, ``load`` or ``other`` kept busy during the row, on average."""
        return self.usage.cores(getattr(self.usage, who + "_s")) if self.usage else 0.0

    def as_json(self) -> dict[str, object]:
        """Plain data for the JSON file."""
        usage = self.usage
        return {
            "row": self.key,
            "kind": self.kind,
            "label": self.label,
            "workers": self.workers,
            "connections": self.connections,
            "events_per_request": self.batch,
            "status": self.status,
            "requests_per_s": round(self.req_per_s, 1),
            "events_per_s": round(self.events_per_s, 1),
            **{k: getattr(self.load, k) if self.load else None for k in _LOAD_KEYS},
            "seconds": round(usage.wall_s, 2) if usage else None,
            "server_cpu_s": round(usage.server_s, 2) if usage else None,
            "server_cpu_us_per_event": round(self.cpu_us_per_event, 1),
            **(usage.as_json() if usage else {}),
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "bridge_counted": self.counted,
            "runs_events_per_s": self.runs,
            "spread_pct": round(self.spread_pct, 1),
            "cpus": self.pinning,
        }


def _delta(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in sorted(after) if after[k] != before[k] and k != "dedupe_entries"}


def _pinning(run: Running) -> str:
    broker = allowed_cpus(run.broker.pid) if run.broker else "-"
    load = ",".join(map(str, sorted(run.load_cpus))) if run.load_cpus else "all"
    return f"server {allowed_cpus(run.server.tree.pid)}, broker {broker}, load {load}"


def _load_json(load: LoadResult) -> dict[str, object]:
    return {
        "answered_per_s": round(load.requests / load.duration_s, 1),
        "ok_per_s": round(load.ok_per_s, 1),
        "non_2xx": load.non_2xx,
        "errors": load.socket_errors,
        "unanswered": load.timeouts,
        **{k: getattr(load, k) for k in _LOAD_KEYS[:4]},
        **load.extra,
    }


@functools.cache
def dedupe_bytes_per_entry() -> float:
    """Memory of one dedupe window entry, measured on the real window (devtools.dedupe_memory)."""
    from devtools.dedupe_memory import bytes_per_entry  # noqa: PLC0415 - only when needed

    return bytes_per_entry(50_000)


class Measurements:
    """Runs the plan's measurements on this machine."""

    def __init__(self, plan: Plan, procs: Processes, servers: Servers, wrk: str, template: Path) -> None:
        self.plan, self.procs, self.servers, self.wrk = plan, procs, servers, wrk
        #: One compact event with ``__ID__`` where its id goes (see events.lua).
        self.template = template

    def _wrk(self, run: Running, batch: int, duration_s: float, **overrides: Any) -> LoadResult:
        """Wrk against ``run``'s event URL with the bench's event, on the load generator's CPUs."""
        connections = self.plan.batch_connections if batch > 1 else self.plan.connections
        options = {"connections": connections, "duration_s": duration_s, "cpus": run.load_cpus} | overrides
        return run_wrk(self.wrk, run.server.events_url, template=self.template, batch=batch, **options)

    def _fixed(
        self, run: Running, rate: float, duration_s: float, tick: Callable[[], None] | None = None
    ) -> LoadResult:
        """bench.load at ``rate`` against ``run``'s event URL, after the plan's warm-up."""
        options = {
            "warmup_s": self.plan.warmup_s,
            "connections": self.plan.connections,
            "cpus": run.load_cpus,
        }
        return run_load(
            run.server.events_url,
            rate=rate,
            duration_s=duration_s,
            template=self.template,
            tick=tick,
            **options,
        )

    def wait_quiet(self) -> float:
        """Wait until nothing else keeps the machine busy (other tests, builds); the busy cores seen.

        The bench's own processes are all stopped between measurements, so what is busy here is
        someone else's. Goes on after :data:`QUIET_WAIT_S` regardless; the rows' ``other`` column
        then shows the disturbance.
        """
        deadline, warned = time.monotonic() + QUIET_WAIT_S, False
        while True:
            before = system_busy_s()
            time.sleep(1.0)
            busy = system_busy_s() - before
            if busy < QUIET_CORES or time.monotonic() > deadline:
                return busy
            if not warned:
                say(f"  (waiting for the machine to quieten: {busy:.2f} cores busy with other work)")
                warned = True

    def row(self, letter: str, workers: int) -> Row:
        """Row ``letter`` (a-d) with ``workers`` server processes, at wrk's maximum rate (closed loop)."""
        kind, label = KINDS[letter]
        if kind == "bridge" and self.plan.bridge_env:
            label = label.replace("production settings", "+ BENCH_BRIDGE_ENV")
        batch = self.plan.batch_size if letter == "d" else 1
        connections = self.plan.batch_connections if batch > 1 else self.plan.connections
        row = Row(f"{letter}{workers}", kind, label, workers, connections, batch)
        self.wait_quiet()
        with self.servers.scenario(row.key, kind, workers, self.plan.cpus(workers)) as run:
            row.pinning = _pinning(run)
            self._wrk(run, batch, self.plan.warmup_s)
            counts, before = run.server.counts(), run.cpu()
            row.load = self._wrk(run, batch, self.plan.duration_s)
            row.usage = run.cpu().since(before, row.load.cpu_s)
            row.peak_rss_mib = run.server.tree.peak_rss_mib()
            row.counted = _delta(run.server.counts(), counts)
        return row

    def fixed_rate(self, kind: str, workers: int, rate: float) -> dict[str, object]:
        """Latency of ``kind`` with ``workers`` at a fixed ``rate`` of single events (open loop)."""
        self.wait_quiet()
        with self.servers.scenario(f"fixed-{kind}{workers}", kind, workers, self.plan.cpus(workers)) as run:
            before = run.cpu()
            load = self._fixed(run, rate, self.plan.fixed_rate_s)
            usage = run.cpu().since(before, load.cpu_s)
            return {
                "kind": kind,
                "workers": workers,
                "rate": round(rate, 1),
                **_load_json(load),
                **usage.as_json(),
                "cpus": _pinning(run),
            }

    def soak(self, rate: float) -> dict[str, object]:
        """The bridge (one worker) at ``rate`` for the soak duration; memory, pace and CPU sampled."""
        interval_s = max(1.0, self.plan.soak_s / 60)
        samples: list[dict[str, float]] = []
        self.wait_quiet()
        with self.servers.scenario("soak", "bridge", 1, self.plan.cpus(1)) as run:
            first = previous = run.cpu()
            published = [run.server.counts()["events.published"]]

            def sample(*, final: bool = False) -> None:
                nonlocal previous
                now = run.cpu()
                if not final and now.at - previous.at < interval_s:
                    return
                counts, usage = run.server.counts(), now.since(previous, 0.0)
                samples.append(
                    {
                        "t_s": round(now.at - first.at, 1),
                        "rss_mib": round(run.server.tree.rss_mib(), 2),
                        "dedupe": counts["dedupe_entries"],
                        "published_per_s": round((counts["events.published"] - published[-1]) / usage.wall_s),
                        "server_cores": round(usage.cores(usage.server_s), 2),
                        "broker_cores": round(usage.cores(usage.broker_s), 2),
                    }
                )
                published.append(counts["events.published"])
                previous = now

            load = self._fixed(run, rate, self.plan.soak_s, tick=sample)
            sample(final=True)
            usage = run.cpu().since(first, load.cpu_s)
            peak = run.server.tree.peak_rss_mib()
        # The baseline is the first sample after the warm-up (imports, buffers, the producer).
        base = next((s for s in samples if s["t_s"] >= self.plan.warmup_s + 1), samples[0])
        last = samples[-1]
        growth_mib = last["rss_mib"] - base["rss_mib"]
        per_entry = dedupe_bytes_per_entry()
        dedupe_mib = (last["dedupe"] - base["dedupe"]) * per_entry / 2**20
        # The last fifth of the run, against the rate asked for: did the bridge keep up to the end?
        # (Not the final sample: it spans the client's end, when nothing more is sent.)
        paced = samples[:-1] or samples
        tail = paced[-max(1, len(paced) // 5) :]
        return {
            "rate": round(rate, 1),
            "seconds": self.plan.soak_s,
            **_load_json(load),
            **usage.as_json(),
            "published_per_s_at_end": round(sum(s["published_per_s"] for s in tail) / len(tail)),
            "broker_cores_at_end": round(sum(s["broker_cores"] for s in tail) / len(tail), 2),
            "rss_base_mib": base["rss_mib"],
            "rss_base_at_s": base["t_s"],
            "rss_end_mib": last["rss_mib"],
            "rss_growth_pct": round(100 * growth_mib / base["rss_mib"], 1),
            "peak_rss_mib": round(peak, 1),
            "dedupe_entries_base": base["dedupe"],
            "dedupe_entries_end": last["dedupe"],
            "dedupe_bytes_per_entry": round(per_entry),
            "dedupe_growth_mib": round(dedupe_mib, 1),
            "rss_growth_without_dedupe_pct": round(100 * (growth_mib - dedupe_mib) / base["rss_mib"], 1),
            "samples": samples,
        }

    def overload(self, max_rate: float) -> dict[str, object]:
        """The bridge (one worker) under far more connections than it admits, /healthz watched."""
        plan, rss = self.plan, []
        self.wait_quiet()
        with self.servers.scenario("overload", "bridge", 1, plan.cpus(1)) as run:
            self._wrk(run, 1, plan.warmup_s)
            rss_before, counts = run.server.tree.rss_mib(), run.server.counts()
            # /healthz on the event port and on the ops listener, where the probes go as deployed.
            clients = {}
            for where, base in (("event_port", run.server.base_url), ("ops_port", run.server.ops_url)):
                log_path = self.servers.log_dir / f"overload-healthz-{where}-client.log"
                log_path.unlink(missing_ok=True)
                command = [
                    sys.executable,
                    "-m",
                    "bench.load",
                    f"{base}/healthz",
                    f"--rate={plan.healthz_rate:g}",
                ]
                command += [f"--duration={plan.overload_s:g}", f"--connections={HEALTHZ_CONNECTIONS}"]
                # It shares a core with wrk's 1536 connections; it measures the bridge, not that.
                options = {"log_path": log_path, "cpus": run.load_cpus, "priority": HEALTHZ_CLIENT_NICE}
                clients[where] = (log_path, self.procs.spawn(f"healthz-{where}-client", command, **options))
            before = run.cpu()
            load = self._wrk(
                run,
                1,
                plan.overload_s,
                connections=plan.overload_connections,
                timeout_s=OVERLOAD_TIMEOUT_S,
                tick=lambda: rss.append(run.server.tree.rss_mib()),
            )
            usage = run.cpu().since(before, load.cpu_s)
            rss.append(run.server.tree.rss_mib())
            for _, client in clients.values():
                client.process.wait(plan.overload_s + 30)
            counted = _delta(run.server.counts(), counts)
            peak = run.server.tree.peak_rss_mib()
        healths = {}
        for where, (log_path, _) in clients.items():
            try:
                healths[where] = _load_json(
                    LoadResult.from_json(marker_json(log_path.read_text(errors="replace"), ""), 0.0)
                )
            except RuntimeError:
                healths[where] = {"status": f"no result; see {log_path}"}
        third = max(1, len(rss) // 3)
        published = counted.get("events.published", 0)
        return {
            "connections": plan.overload_connections,
            "seconds": plan.overload_s,
            "answered_per_s": round(load.requests / load.duration_s, 1),
            "overload_factor": round(load.requests / load.duration_s / max_rate, 2) if max_rate else None,
            "timeout_s": OVERLOAD_TIMEOUT_S,
            "ok_per_s": round(load.ok_per_s, 1),
            "non_2xx": load.non_2xx,
            "socket_errors": load.socket_errors,
            "timeouts": load.timeouts,
            "p50_ms": load.p50_ms,
            "p99_ms": load.p99_ms,
            "bridge_counted": counted,
            **usage.as_json(),
            "rss_before_mib": round(rss_before, 1),
            "rss_peak_sampled_mib": round(max(rss), 1),
            "rss_first_third_max_mib": round(max(rss[:third]), 1),
            "rss_last_third_max_mib": round(max(rss[-third:]), 1),
            "peak_rss_mib": round(peak, 1),
            "dedupe_growth_mib": round(published * dedupe_bytes_per_entry() / 2**20, 1),
            "healthz": healths["ops_port"],
            "healthz_where": "ops_port",
            "healthz_by_port": healths,
        }

    def profile(self, letter: str, workers: int, out_dir: Path) -> dict[str, object]:
        """A py-spy profile of the bridge under row ``letter``'s wrk load, ``workers`` processes."""
        pyspy = profile.find_pyspy()
        if pyspy is None:
            return {"status": "py-spy not installed: .venv/bin/pip install py-spy==" + profile.PYSPY_VERSION}
        batch, name, duration_s = (
            self.plan.batch_size if letter == "d" else 1,
            f"profile-{letter}{workers}",
            self.plan.duration_s,
        )
        with self.servers.scenario(name, "bridge", workers, self.plan.cpus(workers)) as run:
            self._wrk(run, batch, self.plan.warmup_s)
            raw = out_dir / f"{name}.txt"
            recorder = profile.start(
                self.procs, pyspy, run.server.tree.pid, duration_s=duration_s, raw=raw, cpus=run.load_cpus
            )
            before = run.cpu()
            load = self._wrk(run, batch, duration_s)
            usage = run.cpu().since(before, load.cpu_s)
            recorder.process.wait(duration_s + 60)
        events = load.ok * batch
        cpu_us = usage.server_s / events * 1e6 if events else None
        summary_path = out_dir / f"{name}-summary.txt"
        summary_path.write_text(profile.summarize(raw, cpu_us))
        where = summary_path.relative_to(ROOT)
        say(f"  {name}: {load.ok_per_s * batch:,.0f} events/s under py-spy; summary in {where}")
        return {
            "raw": str(raw.relative_to(ROOT)),
            "summary": str(summary_path.relative_to(ROOT)),
            "events_per_s_under_profiler": round(load.ok_per_s * batch, 1),
            "cpu_us_per_event_under_profiler": round(cpu_us, 1) if cpu_us else None,
            "areas_us_per_event": profile.areas_us(raw, cpu_us) if cpu_us else {},
        }

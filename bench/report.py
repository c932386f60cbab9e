"""The bench's findings: the machine, the table, the ratios, the targets (met / not met)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import Row

ROOT = Path(__file__).resolve().parent.parent

#: Targets of issue 5.
CEILING_RATIO = 0.8
NAIVE_RATIO = 1.7
P99_AT_HALF_LOAD_MS = 20.0
BATCH_EVENTS_PER_S = 50_000
SOAK_GROWTH_PCT = 10.0
#: The soak counts as kept up when the last fifth published at least this share of the rate.
SOAK_KEPT_UP = 0.95
#: Under overload RSS must stop growing: the last third's peak within this of the first third's.
OVERLOAD_PLATEAU_PCT = 10.0
HEALTHZ_P99_MS = 50.0
#: What the bridge promises to bound under overload (docs/http-api.md, "Overload"): 512 bodies of
#: 64 KiB and 4 batches of 4 MiB, in MiB. The overload run's growth must stay under it,
#: plus the dedupe window's entries for the events it published meanwhile.
BODY_BOUND_MIB = (512 * 64 * 1024 + 4 * 4 * 2**20) / 2**20


def first_line(command: list[str]) -> str:
    """The first line a command prints, or ``?``."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return ((out.stdout or out.stderr).strip().splitlines() or ["?"])[0]


def machine(wrk_version: str, tansu: str) -> dict[str, object]:
    """What the numbers were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "?"
    )
    meminfo = Path("/proc/meminfo").read_text().split()
    mem_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20
    versions = {}
    for package in ("aiohttp", "aiokafka", "uvloop", "orjson", "structlog", "prometheus-client", "py-spy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = None
            versions[package] = importlib.metadata.version(package)
    git = ["git", "-C", str(ROOT)]
    commit = first_line([*git, "rev-parse", "--short", "HEAD"])
    dirty = bool(first_line([*git, "status", "--porcelain", "--untracked-files=no"]).strip("?"))
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "packages": versions,
        "wrk": wrk_version,
        "broker": f"{tansu}, memory storage, 127.0.0.1",
        "git": commit + (" + uncommitted changes" if dirty else ""),
    }


@dataclass
class Target:
    """One target of the issue and whether this run met it."""

    name: str
    met: bool | None  # None: not measured
    detail: str

    def line(self) -> str:
        """``[met]     name: detail``."""
        mark = {True: "met", False: "NOT MET", None: "not measured"}[self.met]
        return f"  [{mark}] {self.name}: {self.detail}"


def _row(rows: dict[str, Row], key: str) -> Row | None:
    row = rows.get(key)
    return row if row is not None and row.ok else None


def targets(
    rows: dict[str, Row],
    fixed: dict[int, dict[str, object]],
    soak: dict[str, object] | None,
    overload: dict[str, object] | None,
    workers: tuple[int, ...],
) -> list[Target]:
    """Each target of issue 5, met or not, with the numbers."""
    found: list[Target] = []
    for w in workers:
        a, b, c = (_row(rows, f"{k}{w}") for k in "abc")
        n = f"{w} worker{'s' if w > 1 else ''}"
        for other, what, threshold in ((a, "ceiling", CEILING_RATIO), (b, "naive", NAIVE_RATIO)):
            name = f"single-event throughput >= {threshold} x {what} ({n})"
            if other and c:
                ratio = c.req_per_s / other.req_per_s
                key = f"c{w}/{other.key}"
                detail = f"{key} = {c.req_per_s:,.0f} / {other.req_per_s:,.0f} req/s = {ratio:.2f}"
                found.append(Target(name, ratio >= threshold, detail))
            else:
                found.append(Target(name, None, _why(rows, w)))
        f = fixed.get(w)
        name = f"p99 <= {P99_AT_HALF_LOAD_MS:g} ms at half the maximum throughput ({n})"
        if f and "bridge" in f:
            bridge, bare = f["bridge"], f.get("ceiling", {})
            assert isinstance(bridge, dict)  # noqa: S101 - built by measure.fixed_rate
            assert isinstance(bare, dict)  # noqa: S101
            p99 = float(bridge["p99_ms"])
            detail = (
                f"p99 {p99:.1f} ms (p50 {bridge['p50_ms']:.1f}, p95 {bridge['p95_ms']:.1f}) at a fixed "
                f"{bridge['rate']:,.0f} req/s = half of c{w}; {bridge['non_2xx']} non-2xx; the same client "
                f"against a{w} at that rate: p99 {bare.get('p99_ms', float('nan')):.1f} ms"
            )
            found.append(Target(name, p99 <= P99_AT_HALF_LOAD_MS and bridge["non_2xx"] == 0, detail))
        else:
            found.append(Target(name, None, "not run" if f is None else str(f.get("status"))))
    d1 = _row(rows, "d1")
    name = f"batch ingest >= {BATCH_EVENTS_PER_S:,} events/s on one core (1 worker)"
    if d1:
        detail = (
            f"d1 = {d1.events_per_s:,.0f} events/s ({d1.req_per_s:,.0f} batches of {d1.batch}/s), "
            f"server on CPUs {d1.pinning.split(',')[0].removeprefix('server ')}, "
            f"busy {d1.cores('server'):.2f} cores"
        )
        found.append(Target(name, d1.events_per_s >= BATCH_EVENTS_PER_S, detail))
    else:
        found.append(Target(name, None, _why(rows, 1, "d")))
    found.extend(_soak_targets(soak))
    found.extend(_overload_targets(overload))
    return found


def _why(rows: dict[str, Row], workers: int, letters: str = "abc") -> str:
    missing = [f"{k}{workers}: {rows[f'{k}{workers}'].status}" for k in letters if f"{k}{workers}" in rows]
    return "; ".join(m for m in missing if not m.endswith(": ok")) or "not run"


def _soak_targets(soak: dict[str, Any] | None) -> list[Target]:
    name = f"soak at half load: RSS grows <= {SOAK_GROWTH_PCT:g} %"
    net_name = name + ", not counting the dedupe window's designed growth"
    if soak is None or "rss_growth_pct" not in soak:
        why = "not run" if soak is None else str(soak.get("status"))
        return [Target(name, None, why), Target(net_name, None, why)]
    s = soak
    growth, net = float(s["rss_growth_pct"]), float(s["rss_growth_without_dedupe_pct"])
    kept_up = s["published_per_s_at_end"] >= SOAK_KEPT_UP * s["rate"]
    pace = (
        "kept up to the end"
        if kept_up
        else f"FELL BEHIND: {s['published_per_s_at_end']:,}/s published in the last fifth (broker "
        f"{s['broker_cores_at_end']:.2f} cores then), so the latencies are mostly queueing"
    )
    detail = (
        f"{s['rss_base_mib']:.0f} MiB at {s['rss_base_at_s']:g} s -> {s['rss_end_mib']:.0f} MiB at the end "
        f"of {s['seconds']:g} s at {s['rate']:,.0f} req/s = {growth:+.1f} %; {pace}; "
        f"p99 {s['p99_ms']:.1f} ms, {s['non_2xx']} non-2xx"
    )
    net_detail = (
        f"the dedupe window went {s['dedupe_entries_base']:,} -> {s['dedupe_entries_end']:,} keys x "
        f"{s['dedupe_bytes_per_entry']} B = {s['dedupe_growth_mib']:.0f} MiB (it grows until "
        f"BRIDGE_DEDUPE_MAX_ENTRIES or the 48 h window, by design); the rest = {net:+.1f} %"
    )
    return [
        Target(name, growth <= SOAK_GROWTH_PCT, detail),
        Target(net_name, net <= SOAK_GROWTH_PCT, net_detail),
    ]


def _overload_targets(o: dict[str, Any] | None) -> list[Target]:
    names = (
        "3x overload: sheds with 503",
        "3x overload: RSS bounded",
        f"3x overload: /healthz p99 < {HEALTHZ_P99_MS:g} ms",
    )
    if o is None or "bridge_counted" not in o:
        why = "not run" if o is None else str(o.get("status"))
        return [Target(n, None, why) for n in names]
    counted = o["bridge_counted"]
    assert isinstance(counted, dict)  # noqa: S101 - built by measure.overload
    shed = int(counted.get("status.503", 0))
    ok = int(counted.get("status.200", 0))
    factor = f" = {o['overload_factor']:.1f} x c1's maximum" if o.get("overload_factor") else ""
    detail = (
        f"{o['connections']} connections for {o['seconds']:g} s: {o['answered_per_s']:,.0f} answers/s"
        f"{factor}, {o['ok_per_s']:,.0f}/s of them 2xx; the bridge counted "
        f"{ok:,} x 200 and {shed:,} x 503; wrk: {o['socket_errors']} socket errors, "
        f"{o['timeouts']} timeouts (> {o['timeout_s']:g} s)"
    )
    growth = float(o["peak_rss_mib"]) - float(o["rss_before_mib"])
    bound = BODY_BOUND_MIB + float(o["dedupe_growth_mib"])
    first, last = float(o["rss_first_third_max_mib"]), float(o["rss_last_third_max_mib"])
    # Bounded: under the promised bound, and flat (not still climbing) by the last third of the run.
    bounded = growth <= bound and last <= first * (1 + OVERLOAD_PLATEAU_PCT / 100)
    rss_detail = (
        f"{o['rss_before_mib']:.0f} MiB before, peak {o['peak_rss_mib']:.0f} MiB (+{growth:.0f}); bound "
        f"{bound:.0f} MiB = {BODY_BOUND_MIB:.0f} MiB of bodies in flight + "
        f"{o['dedupe_growth_mib']:.0f} MiB of dedupe keys for the events published meanwhile; "
        f"highest in the first third of the run {first:.0f} MiB, in the last third {last:.0f} MiB "
        f"(flat: <= +{OVERLOAD_PLATEAU_PCT:g} %)"
    )
    health = o["healthz"]
    assert isinstance(health, dict)  # noqa: S101
    if "p99_ms" in health:
        p99 = float(health["p99_ms"])
        health_detail = (
            f"p99 {p99:.1f} ms, p50 {health['p50_ms']:.1f} ms, max {health['max_ms']:.1f} ms over "
            f"{health['answered_per_s']:g} GET/s; {health['non_2xx']} non-2xx, {health['errors']} errors, "
            f"client sent late by p99 {health.get('late_p99_ms', 0):.1f} ms"
        )
        health_met: bool | None = p99 < HEALTHZ_P99_MS and health["non_2xx"] == 0 and health["errors"] == 0
        by_port = o.get("healthz_by_port") or {}
        if o.get("healthz_where") == "ops_port" and "p99_ms" in by_port.get("event_port", {}):
            event_port = by_port["event_port"]
            health_detail = (
                f"on the ops listener (BRIDGE_OPS_PORT, where the probes go): {health_detail}; "
                f"on the event port: p99 {float(event_port['p99_ms']):.1f} ms, "
                f"p50 {float(event_port['p50_ms']):.1f} ms"
            )
    else:
        health_detail, health_met = str(health.get("status")), None
    return [
        Target(names[0], shed > 0, detail),
        Target(names[1], bounded, rss_detail),
        Target(names[2], health_met, health_detail),
    ]


def table(rows: list[Row]) -> list[str]:
    """The results table, one line per row."""
    head = (
        f"{'row':<4} {'server':<42} {'wk':>2} {'conn':>4} {'req/s':>8} {'events/s':>9} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'CPU us/ev':>9} {'srv cores':>9} "
        f"{'broker':>6} {'wrk':>5} {'other':>5} {'peak RSS':>9} {'non-2xx':>7} {'spread':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if not r.ok or r.load is None:
            lines.append(f"{r.key:<4} {r.label:<42} {r.workers:>2} {r.connections:>4} {r.status}")
            continue
        load = r.load
        lines.append(
            f"{r.key:<4} {r.label:<42} {r.workers:>2} {r.connections:>4} {r.req_per_s:>8,.0f} "
            f"{r.events_per_s:>9,.0f} {load.p50_ms:>7.1f} {load.p95_ms:>7.1f} {load.p99_ms:>7.1f} "
            f"{r.cpu_us_per_event:>9.0f} {r.cores('server'):>9.2f} {r.cores('broker'):>6.2f} "
            f"{r.cores('load'):>5.2f} {r.cores('other'):>5.2f} {r.peak_rss_mib:>5.0f} MiB "
            f"{load.non_2xx + load.socket_errors:>7} {r.spread_pct:>5.0f}%"
        )
    return lines


def ratios(rows: dict[str, Row], workers: tuple[int, ...]) -> list[str]:
    """c/a and c/b (and the batch's events/s over single events) for each worker count."""
    out = []
    for w in workers:
        a, b, c, d = (_row(rows, f"{k}{w}") for k in "abcd")
        parts = []
        if a and c:
            parts.append(f"c{w}/a{w} = {c.req_per_s / a.req_per_s:.2f}")
        if b and c:
            parts.append(f"c{w}/b{w} = {c.req_per_s / b.req_per_s:.2f}")
        if c and d:
            parts.append(f"d{w}/c{w} (events/s) = {d.events_per_s / c.events_per_s:.1f}")
        if parts:
            out.append(f"  {w} worker{'s' if w > 1 else ''}: " + "   ".join(parts))
    w1, w2 = 1, 2
    for k in "abcd":
        one, two = _row(rows, f"{k}{w1}"), _row(rows, f"{k}{w2}")
        if one and two:
            out.append(f"  {k}{w2}/{k}{w1} (2 workers over 1) = {two.events_per_s / one.events_per_s:.2f}")
    return out

"""The bench's findings: the machine, the table, the ratios, the targets (met / not met)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Targets of issue 5 (throughput ratios, latency, batch) and issue 13 (the window's RSS per key).
CEILING_RATIO = 0.8
NAIVE_RATIO = 1.7
P99_AT_HALF_LOAD_MS = 20.0
BATCH_EVENTS_PER_S = 50_000
RSS_PER_KEY_BYTES = 120
#: Flat: RSS grows at most this much from the moment the window is full to the end of the soak.
FLAT_AFTER_FULL_PCT = 10.0
#: The soak counts as kept up when the last fifth published at least this share of the rate.
SOAK_KEPT_UP = 0.95


def first_line(command: list[str]) -> str:
    """The first line a command prints, or ``?``."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return ((out.stdout or out.stderr).strip().splitlines() or ["?"])[0]


def machine(wrk_version: str, tansu: str) -> dict[str, object]:
    """What the numbers were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    meminfo = Path("/proc/meminfo").read_text().split()
    versions = {}
    for package in ("aiohttp", "aiokafka", "uvloop", "orjson", "structlog", "prometheus-client", "py-spy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    git = ["git", "-C", str(ROOT)]
    dirty = first_line([*git, "status", "--porcelain", "--untracked-files=no"]).strip("?")
    return {
        "cpu": next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "?"),
        "cores": os.cpu_count(),
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "kernel": platform.release(),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "packages": versions,
        "wrk": wrk_version.split(" Copyright", maxsplit=1)[0],
        "broker": f"{tansu}, memory storage, 127.0.0.1",
        "git": first_line([*git, "rev-parse", "--short", "HEAD"])
        + (" + uncommitted changes" if dirty else ""),
    }


@dataclass
class Target:
    """One target and whether this run met it."""

    name: str
    met: bool | None  # None: not measured
    detail: str

    def line(self) -> str:
        """``[met] name: detail``."""
        mark = {True: "met", False: "NOT MET", None: "not measured"}[self.met]
        return f"  [{mark}] {self.name}: {self.detail}"


def _ok(rows: dict[str, Any], key: str) -> dict[str, Any] | None:
    row = rows.get(key)
    return row if row is not None and row["status"] == "ok" else None


def _why(rows: dict[str, Any], *keys: str) -> str:
    return "; ".join(rows[k]["status"] for k in keys if k in rows and not _ok(rows, k)) or "not run"


def targets(rows: dict[str, Any], fixed: dict[str, Any], soak: dict[str, Any] | None) -> list[Target]:
    """Each target, met or not, with the numbers."""
    found: list[Target] = []
    a, b, c, d = (_ok(rows, f"{k}1") for k in "abcd")
    for other, key, threshold in ((a, "a1", CEILING_RATIO), (b, "b1", NAIVE_RATIO)):
        name = f"single-event throughput >= {threshold} x {'ceiling' if key == 'a1' else 'naive'} (1 worker)"
        if other and c:
            ratio = c["requests_per_s"] / other["requests_per_s"]
            detail = (
                f"c1/{key} = {c['requests_per_s']:,.0f} / {other['requests_per_s']:,.0f} req/s = {ratio:.2f}"
            )
            found.append(Target(name, ratio >= threshold, detail))
        else:
            found.append(Target(name, None, _why(rows, "c1", key)))
    name = f"p99 <= {P99_AT_HALF_LOAD_MS:g} ms at half the maximum throughput (1 worker)"
    bridge, bare = fixed.get("bridge", {}), fixed.get("ceiling", {})
    if "p99_ms" in bridge:
        detail = (
            f"p99 {bridge['p99_ms']:.1f} ms (p50 {bridge['p50_ms']:.1f}, p95 {bridge['p95_ms']:.1f}) at "
            f"a fixed {bridge['rate']:,.0f} req/s = half of c1; {bridge['non_2xx']} non-2xx; the same client "
            f"against a1 at that rate: p99 {bare.get('p99_ms', float('nan')):.1f} ms"
        )
        found.append(Target(name, bridge["p99_ms"] <= P99_AT_HALF_LOAD_MS and bridge["non_2xx"] == 0, detail))
    else:
        found.append(Target(name, None, str(bridge.get("status", "not run"))))
    name = f"batch ingest >= {BATCH_EVENTS_PER_S:,} events/s on one core (1 worker)"
    if d:
        detail = (
            f"d1 = {d['events_per_s']:,.0f} events/s ({d['requests_per_s']:,.0f} batches of "
            f"{d['events_per_request']}/s), server busy {d['server_cores']:.2f} cores"
        )
        found.append(Target(name, d["events_per_s"] >= BATCH_EVENTS_PER_S, detail))
    else:
        found.append(Target(name, None, _why(rows, "d1")))
    return found + _soak_targets(soak)


def _soak_targets(s: dict[str, Any] | None) -> list[Target]:
    per_key = f"soak with a full window: RSS <= {RSS_PER_KEY_BYTES} bytes per dedupe key"
    flat = f"soak: RSS flat after the window fills (grows <= {FLAT_AFTER_FULL_PCT:g} %)"
    if s is None or "rss_end_mib" not in s:
        why = "not run" if s is None else str(s.get("status"))
        return [Target(per_key, None, why), Target(flat, None, why)]
    pace = f"{s['published_per_s_at_end']:,}/s published in the last fifth"
    pace += (
        ""
        if s["published_per_s_at_end"] >= SOAK_KEPT_UP * s["rate"]
        else " (FELL BEHIND: latency is queueing)"
    )
    detail = (
        f"{s['rss_base_mib']:.0f} MiB at {s['rss_base_at_s']:g} s with {s['dedupe_entries_base']:,} keys -> "
        f"{s['rss_end_mib']:.0f} MiB with {s['dedupe_entries_end']:,} keys after {s['seconds']:g} s at "
        f"{s['rate']:,.0f} req/s = {s['rss_per_key_bytes']} bytes per key; {pace}; "
        f"p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, {s['non_2xx']} non-2xx"
    )
    if s["window_full_at_s"] is None:
        why = f"the window did not fill ({s['dedupe_entries_end']:,} of {s['window_cap']:,} keys)"
        return [Target(per_key, None, f"{why}; {detail}"), Target(flat, None, why)]
    growth = s["rss_after_full_pct"]
    flat_detail = (
        f"full ({s['window_cap']:,} keys) at {s['window_full_at_s']:g} s with {s['rss_full_mib']:.0f} MiB, "
        f"{s['rss_end_mib']:.0f} MiB at the end = {growth:+.1f} %"
    )
    return [
        Target(per_key, s["rss_per_key_bytes"] <= RSS_PER_KEY_BYTES, detail),
        Target(flat, growth <= FLAT_AFTER_FULL_PCT, flat_detail),
    ]


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The results table, one line per row."""
    head = (
        f"{'row':<4} {'server':<42} {'conn':>4} {'req/s':>8} {'events/s':>9} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'CPU us/ev':>9} {'srv cores':>9} {'broker':>6} {'wrk':>5} {'other':>5} "
        f"{'peak RSS':>9} {'non-2xx':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"{r['row']:<4} {r['status']}")
            continue
        lines.append(
            f"{r['row']:<4} {r['label']:<42} {r['connections']:>4} {r['requests_per_s']:>8,.0f} "
            f"{r['events_per_s']:>9,.0f} {r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['p99_ms']:>7.1f} "
            f"{r['server_cpu_us_per_event']:>9.0f} "
            f"{r['server_cores']:>9.2f} {r['broker_cores']:>6.2f} {r['loadgen_cores']:>5.2f} "
            f"{r['other_cores']:>5.2f} {r['peak_rss_mib']:>5.0f} MiB {r['non_2xx'] + r['errors']:>7}"
        )
    return lines


def ratios(rows: dict[str, Any]) -> str:
    """c1/a1, c1/b1 and d1/c1 (the batch's events/s over single events), where measured."""
    a, b, c, d = (_ok(rows, f"{k}1") for k in "abcd")
    parts = [f"c1/{o['row']} = {c['requests_per_s'] / o['requests_per_s']:.2f}" for o in (a, b) if o and c]
    if c and d:
        parts.append(f"d1/c1 (events/s) = {d['events_per_s'] / c['events_per_s']:.1f}")
    return "  " + ("   ".join(parts) or "none measured")

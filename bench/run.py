"""``make bench`` / ``python -m bench``: every row, the targets, the table, the JSON.

See docs/performance.md for what each row means. ``python -m bench --help``
lists the ``BENCH_*`` variables (``BENCH_QUICK=1`` for a short trial run).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report, say
from bench.measure import Measurements, ensure_wrk
from bench.plan import VARIABLES, Plan, cpus
from bench.procs import Processes
from bench.servers import LOOP, Servers
from devtools.broker import tansu_binary

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "altinn-events" / "valid" / "06-correspondencepublished.json"
#: Cores of other work during a row above which the bench warns that the row was disturbed.
DISTURBED_CORES = 0.1


def write_template(path: Path) -> int:
    """The fixture as compact JSON (as Altinn sends it) with ``__ID__`` for its id; its size."""
    compact = json.dumps(json.loads(FIXTURE.read_bytes()) | {"id": "__ID__"}, separators=(",", ":"))
    path.write_text(compact)
    return len(compact) - len("__ID__") + 36  # the real id is a 36-character UUID, as the bench's are


def command_line() -> str:
    """How this run was started, with the ``BENCH_*`` variables that were set."""
    settings = " ".join(f"{k}={os.environ[k]}" for k in VARIABLES if os.environ.get(k))
    return f"{'make bench' if os.environ.get('MAKELEVEL') else 'python -m bench'} {settings}".strip()


def pinning() -> str:
    """Where the servers and the rest run."""
    server, load = cpus()
    return (
        f"server on CPU {min(server)}, load generator + broker on {sorted(load)}" if server else "no pinning"
    )


def _attempt(what: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()``, or its failure: one failed measurement must not hide the others."""
    try:
        return measure()
    except Exception as exc:  # noqa: BLE001 - report and go on
        traceback.print_exc()
        return {"status": f"{what} failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"}


def _latency(r: dict[str, Any]) -> str:
    if "p99_ms" not in r:
        return str(r.get("status"))
    return (
        f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"{r['ok_per_s']:,.0f} 2xx/s, {r['non_2xx']} non-2xx, {r['errors']} errors, "
        f"client late p99 {r['late_p99_ms']:.1f} ms"
    )


def _header(plan: Plan, meta: dict[str, Any], body_bytes: int, started: dt.datetime) -> None:
    packages = ", ".join(f"{k} {v}" for k, v in meta["packages"].items() if v)
    say(f"altinn-kafka-bridge bench, {started:%Y-%m-%d %H:%M} UTC: {command_line()}")
    say(
        f"machine: {meta['cpu']}, {meta['cores']} cores (shared by load generator, broker and server: "
        f"{pinning()}), {meta['memory_gib']} GiB, {meta['os']}, Linux {meta['kernel']}, Python "
        f"{meta['python']}, {packages}; {meta['wrk']}; {meta['broker']}; event loop {LOOP}; git {meta['git']}"
    )
    say(
        f"rows: one worker; wrk -t1, {plan.warmup_s:g} s warm-up + {plan.duration_s:g} s, "
        f"{plan.repeat} run(s) each (the median is reported), {body_bytes}-byte events with unique ids; "
        "bridge rows: KAFKA_ENABLE_IDEMPOTENCE=false (Tansu cannot do it), everything else default"
        + (f" plus BENCH_BRIDGE_ENV {plan.bridge_env}" if plan.bridge_env else "")
    )
    say()


def _throughput(plan: Plan, m: Measurements, results: dict[str, Any]) -> None:
    say(f"Throughput (wrk, closed loop, as fast as each server answers; {plan.repeat} run(s) of each row):")
    say(report.table([])[0])
    runs: dict[str, list[dict[str, Any]]] = {}
    # Repetitions interleaved, so that a drift in the machine's speed hits every row alike.
    for _ in range(plan.repeat):
        for key in ("c1", "d1", "a1", "b1"):
            if not plan.runs(key) or (key in runs and runs[key][-1]["status"] != "ok"):
                continue
            row = {"row": key} | _attempt(key, lambda k=key: m.row(k[0]))
            runs.setdefault(key, []).append(row)
            say(report.table([row])[-1])
            if row.get("other_cores", 0) > DISTURBED_CORES:
                say(f"    WARNING: other processes kept {row['other_cores']:.2f} cores busy meanwhile")
    for key, tries in runs.items():
        # The run with the median events/s, carrying every run's events/s.
        measured = sorted((r for r in tries if r["status"] == "ok"), key=lambda r: r["events_per_s"])
        median = measured[(len(measured) - 1) // 2] if measured else tries[-1]
        results["rows"][key] = median | {"runs_events_per_s": [r["events_per_s"] for r in measured]}
    say()


def _latency_and_soak(plan: Plan, m: Measurements, results: dict[str, Any]) -> None:
    c1 = results["rows"].get("c1", {})
    if c1.get("status") != "ok":
        return
    rate = c1["requests_per_s"] / 2
    if plan.runs("fixed"):
        say(f"Latency at half the maximum throughput (bench.load, fixed rate {rate:,.0f} req/s):")
        for kind in ("bridge", "ceiling"):
            results["fixed_rate"][kind] = _attempt(kind, lambda k=kind: m.fixed_rate(k, rate))
            say(f"  {kind}: {_latency(results['fixed_rate'][kind])}")
    if plan.runs("soak"):
        say(f"Soak: the bridge at {rate:,.0f} req/s for {plan.soak_s:g} s ...")
        results["soak"] = _attempt("soak", lambda: m.soak(rate))
        say(f"  {_latency(results['soak'])}")
    say()


def _print(results: dict[str, Any], started: dt.datetime, finished: dt.datetime) -> None:
    minutes = (finished - started).total_seconds() / 60
    say(f"Results ({results['mode']} run, {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min):")
    for line in report.table(list(results["rows"].values())):
        say(line)
    say("  cores: CPU seconds per second during the row; other = the rest of the machine (should be ~0)")
    say()
    say("Ratios:")
    say(report.ratios(results["rows"]))
    say()
    say("Targets (issues 5 and 13):")
    found = report.targets(results["rows"], results["fixed_rate"], results["soak"])
    for target in found:
        say(target.line())
    results["targets"] = [{"target": t.name, "met": t.met, "detail": t.detail} for t in found]


def main(argv: list[str]) -> int:
    """Run the bench; exit code 0 when it ran (whatever the targets), 130 when interrupted."""
    if "-h" in argv or "--help" in argv:
        say(__doc__ or "")
        for name, meaning in VARIABLES.items():
            say(f"  {name:<20} {meaning}")
        return 0
    plan = Plan.from_env(os.environ)
    started = dt.datetime.now(dt.UTC)
    log_dir = RESULTS / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    template = log_dir / "event-template.json"
    body_bytes = write_template(template)
    wrk = ensure_wrk()
    meta = report.machine(
        report.first_line([wrk, "-v"]), report.first_line([str(tansu_binary()), "--version"])
    )
    _header(plan, meta, body_bytes, started)

    results: dict[str, Any] = {"mode": "quick" if plan.quick else "full", "rows": {}, "fixed_rate": {}}
    results |= {"soak": None, "profiles": {}}
    interrupted = False
    with Processes() as procs:
        m = Measurements(plan, procs, Servers(procs, log_dir, plan.bridge_env), wrk, template)
        try:
            _throughput(plan, m, results)
            _latency_and_soak(plan, m, results)
            if plan.profile:
                say("Profiles (py-spy; separate runs, not part of the measurements above):")
                for key in ("c1", "d1"):
                    results["profiles"][key] = _attempt("profile", lambda k=key: m.profile(k[0], log_dir))
                say()
        except KeyboardInterrupt:
            interrupted = True
            say("\ninterrupted: stopping every process the bench started; partial results follow")
    finished = dt.datetime.now(dt.UTC)
    _print(results, started, finished)
    document = {
        "date": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "command": command_line(),
        "machine": meta,
        "plan": {k: sorted(v) if isinstance(v, frozenset) else v for k, v in vars(plan).items()},
        "event_bytes": body_bytes,
        "event_loop": LOOP,
        "pinning": pinning(),
        **results,
        "rows": list(results["rows"].values()),
    }
    path = RESULTS / f"{started:%Y%m%dT%H%M%SZ}{'-quick' if plan.quick else ''}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    # latest.json is a complete full run (the one docs/performance.md quotes); anything less gets its own.
    latest = RESULTS / f"latest{'-quick' if plan.quick else ('-partial' if plan.only else '')}.json"
    say()
    if interrupted:
        say(f"JSON: {path.relative_to(ROOT)} (interrupted: {latest.name} left as it was)")
    else:
        shutil.copyfile(path, latest)
        say(f"JSON: {path.relative_to(ROOT)} (and {latest.relative_to(ROOT)})")
    say(f"logs of this run: {log_dir.relative_to(ROOT)}/")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench import report, say
from bench.loadgen import ensure_wrk, wrk_version
from bench.measure import KINDS, Measurements, Row
from bench.plan import VARIABLES, Plan
from bench.procs import Processes
from bench.servers import Servers
from devtools.broker import tansu_binary

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "altinn-events" / "valid" / "06-correspondencepublished.json"
#: Cores of other work during a row above which the bench warns that the row was disturbed.
DISTURBED_CORES = 0.1
T = TypeVar("T")


def write_template(path: Path) -> int:
    """The fixture as compact JSON (as Altinn sends it) with ``__ID__`` for its id; its size."""
    event = json.loads(FIXTURE.read_bytes()) | {"id": "__ID__"}
    compact = json.dumps(event, separators=(",", ":"))
    path.write_text(compact)
    return len(compact) - len("__ID__") + 36  # the real id is a 36-character UUID, as the bench's are


def command_line() -> str:
    """How this run was started, with the ``BENCH_*`` variables that were set."""
    settings = " ".join(f"{k}={os.environ[k]}" for k in VARIABLES if os.environ.get(k))
    return f"{'make bench' if os.environ.get('MAKELEVEL') else 'python -m bench'} {settings}".strip()


def _attempt(measure: Callable[[], T], failed: Callable[[str], T]) -> T:
    """``measure()``, or ``failed(why)``: one failed measurement must not hide the others."""
    try:
        return measure()
    except Exception as exc:  # noqa: BLE001 - report and go on
        traceback.print_exc()
        return failed(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _progress(row: Row, which: str = "") -> None:
    if not row.ok or row.load is None:
        say(f"  {row.key}{which} {row.label}: {row.status}")
        return
    say(
        f"  {row.key}{which} {row.label}: {row.req_per_s:,.0f} req/s, {row.events_per_s:,.0f} events/s, "
        f"p99 {row.load.p99_ms:.1f} ms, {row.cpu_us_per_event:.0f} us CPU/event, "
        f"{row.load.non_2xx + row.load.socket_errors} non-2xx/errors; {row.pinning}"
    )
    if row.cores("other") > DISTURBED_CORES:
        say(f"    WARNING: other processes kept {row.cores('other'):.2f} cores busy during this row")


def _pinning_note(plan: Plan) -> str:
    notes = []
    for w in plan.workers:
        server, load = plan.cpus(w)
        n = f"{w} worker{'s' if w > 1 else ''}"
        if server is None or load is None:
            notes.append(f"{n}: nothing pinned (every process may use every core)")
        else:
            cpus = ",".join(map(str, sorted(server))), ",".join(map(str, sorted(load)))
            notes.append(f"{n}: server on CPU {cpus[0]}, load generator + broker on CPU {cpus[1]}")
    return "; ".join(notes)


@dataclass
class Results:
    """Everything one run measured (missing parts stay None or empty)."""

    rows: dict[str, Row] = field(default_factory=dict)
    fixed: dict[int, dict[str, object]] = field(default_factory=dict)
    soak: dict[str, object] | None = None
    overload: dict[str, object] | None = None
    profiles: dict[str, object] = field(default_factory=dict)
    interrupted: bool = False


def _header(plan: Plan, meta: dict[str, Any], body_bytes: int, started: dt.datetime) -> None:
    packages = ", ".join(f"{k} {v}" for k, v in meta["packages"].items() if v)
    extra_env = f", plus BENCH_BRIDGE_ENV: {plan.bridge_env}" if plan.bridge_env else ""
    say(f"altinn-kafka-bridge bench, {_mode(plan)} run, {started:%Y-%m-%d %H:%M} UTC: {command_line()}")
    say(
        f"machine: {meta['cpu']}, {meta['cores']} cores, {meta['memory_gib']} GiB, {meta['os']}, "
        f"Linux {meta['kernel']}, Python {meta['python']}; git {meta['git']}"
    )
    say(f"packages: {packages}")
    say(f"load generators: {meta['wrk']} (closed loop), bench.load (fixed rate); broker: {meta['broker']}")
    say(
        f"NOTE: the {meta['cores']} cores are shared by the load generator, the broker and the server. "
        f"Pinning: {_pinning_note(plan)}."
    )
    say(
        "NOTE: bridge rows run with KAFKA_ENABLE_IDEMPOTENCE=false only because Tansu cannot do the "
        "idempotent producer; acks=all always; BRIDGE_AUTH=token (token in the path), "
        f"BRIDGE_DEDUPE=kafka, everything else default{extra_env}."
    )
    say(
        f"load: wrk -t1 -c{plan.connections}, {plan.warmup_s:g} s warm-up + {plan.duration_s:g} s "
        f"measured per run, {plan.repeat} run(s) per row (fresh broker and server each; the median "
        f"is reported); body {FIXTURE.name} compacted ({body_bytes} bytes), a unique id per event; "
        f"batch rows {plan.batch_size} events per request on {plan.batch_connections} connections "
        "(what the bridge reads at once)."
    )
    say()


def _mode(plan: Plan) -> str:
    return "quick" if plan.quick else "full"


def _throughput(plan: Plan, m: Measurements, results: Results) -> None:
    say(f"Throughput (wrk, closed loop, as fast as each server answers; {plan.repeat} run(s) of each row):")
    runs: dict[str, list[Row]] = {}
    # Repetitions interleaved, so that a drift in the machine's speed hits every row alike.
    # The bridge first: the comparison servers then run on the event loop it uses.
    for n in range(plan.repeat):
        for w in plan.workers:
            for letter in "cdab":
                key = f"{letter}{w}"
                if not plan.runs(key) or (key in runs and not runs[key][-1].ok):
                    continue
                row = _attempt(lambda k=letter, n=w: m.row(k, n), _failed_row(key, w))
                runs.setdefault(key, []).append(row)
                _progress(row, f" (run {n + 1}/{plan.repeat})" if plan.repeat > 1 else "")
    for key, tries in runs.items():
        # The run with the median events/s, carrying every run's events/s.
        measured = sorted((r for r in tries if r.ok), key=lambda r: r.events_per_s)
        results.rows[key] = measured[(len(measured) - 1) // 2] if measured else tries[-1]
        results.rows[key].runs = [round(r.events_per_s, 1) for r in tries if r.ok] if measured else []
    servers = m.servers
    same = " (the same)" if servers.loop == servers.bridge_loop else ""
    say(
        f"  event loop: the bridge {servers.bridge_loop or 'not run'}, the comparison servers "
        f"{servers.loop or 'asyncio'}{same}"
    )
    say()


def _failed_row(key: str, workers: int) -> Callable[[str], Row]:
    return lambda why: Row(key, "", KINDS[key[0]][1], workers, 0, 1, status=f"failed: {why}")


def _failed(what: str) -> Callable[[str], dict[str, object]]:
    return lambda why: {"status": f"{what} failed: {why}"}


def _latency_runs(plan: Plan, m: Measurements, results: Results) -> None:
    if plan.runs("fixed"):
        say("Latency at half the maximum throughput (bench.load, fixed rate):")
    for w in plan.workers:
        c = results.rows.get(f"c{w}")
        if c is None or not c.ok or not plan.runs("fixed"):
            continue
        rate = c.req_per_s / 2
        results.fixed[w] = {
            kind: _attempt(lambda k=kind, n=w, r=rate: m.fixed_rate(k, n, r), _failed(kind))
            for kind in ("bridge", "ceiling")
        }
        for kind, result in results.fixed[w].items():
            say(f"  {kind} {w} worker(s) at {rate:,.0f} req/s: {_latency(result)}")
    c1 = results.rows.get("c1")
    if c1 is not None and c1.ok and plan.runs("soak"):
        say(f"Soak: the bridge (1 worker) at {c1.req_per_s / 2:,.0f} req/s for {plan.soak_s:g} s ...")
        results.soak = _attempt(lambda: m.soak(c1.req_per_s / 2), _failed("soak"))
        say(f"  {_latency(results.soak)}")
    if plan.runs("overload"):
        say(f"Overload: the bridge (1 worker) with {plan.overload_connections} connections ...")
        max_rate = c1.req_per_s if c1 is not None and c1.ok else 0.0
        results.overload = _attempt(lambda: m.overload(max_rate), _failed("overload"))
    say()


def _profiles(plan: Plan, m: Measurements, results: Results, out_dir: Path) -> None:
    if not plan.profile:
        return
    say("Profiles (py-spy; separate runs, not part of the measurements above):")
    for letter, w in (("c", 1), ("d", 1), ("c", 2)):
        if w in plan.workers:
            results.profiles[f"{letter}{w}"] = _attempt(
                lambda k=letter, n=w: m.profile(k, n, out_dir), _failed("profile")
            )
    say()


def _print(plan: Plan, results: Results, started: dt.datetime, finished: dt.datetime) -> list[report.Target]:
    found = report.targets(results.rows, results.fixed, results.soak, results.overload, plan.workers)
    minutes = (finished - started).total_seconds() / 60
    say(f"Results ({_mode(plan)} run, {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min):")
    for line in report.table(list(results.rows.values())):
        say(line)
    say(
        "  srv cores / broker / wrk / other: CPU seconds per second of each during the row (1.00 = one "
        "core busy); other = everything else on the machine (should be ~0: a busy machine skews the row)."
    )
    say("  CPU us/ev: server CPU (all its processes) per accepted event; peak RSS: VmHWM summed over them.")
    say("  spread: (highest - lowest) / median events/s over the row's runs.")
    say()
    say("Ratios:")
    for line in report.ratios(results.rows, plan.workers):
        say(line)
    say()
    say("Targets (issue 5):")
    for target in found:
        say(target.line())
    return found


def main(argv: list[str]) -> int:
    """Run the bench; exit code 0 when it ran (whatever the targets), 130 when interrupted."""
    if "-h" in argv or "--help" in argv:
        say(__doc__ or "")
        for name, meaning in VARIABLES.items():
            say(f"  {name:<28} {meaning}")
        return 0
    plan = Plan.from_env(os.environ)
    started = dt.datetime.now(dt.UTC)
    log_dir = RESULTS / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    template = log_dir / "event-template.json"
    body_bytes = write_template(template)
    wrk = ensure_wrk()
    meta = report.machine(wrk_version(wrk), report.first_line([str(tansu_binary()), "--version"]))
    _header(plan, meta, body_bytes, started)

    results = Results()
    with Processes() as procs:
        servers = Servers(procs, log_dir, plan.bridge_env, plan.loop)
        m = Measurements(plan, procs, servers, wrk, template)
        try:
            _throughput(plan, m, results)
            _latency_runs(plan, m, results)
            _profiles(plan, m, results, log_dir)
        except KeyboardInterrupt:
            results.interrupted = True
            say("\ninterrupted: stopping every process the bench started; partial results follow")
    finished = dt.datetime.now(dt.UTC)
    found = _print(plan, results, started, finished)

    document = {
        "date": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "mode": _mode(plan),
        "interrupted": results.interrupted,
        "command": command_line(),
        "machine": meta,
        "plan": {k: sorted(v) if isinstance(v, frozenset) else v for k, v in vars(plan).items()},
        "event_bytes": body_bytes,
        "event_loop": {"bridge": servers.bridge_loop, "comparison_servers": servers.loop},
        "pinning": _pinning_note(plan),
        "notes": [
            "KAFKA_ENABLE_IDEMPOTENCE=false in the bridge rows only because Tansu cannot do it",
            "the load generator, broker and server share the machine's cores",
        ],
        "rows": [r.as_json() for r in results.rows.values()],
        "fixed_rate": {str(w): v for w, v in results.fixed.items()},
        "soak": results.soak,
        "overload": results.overload,
        "profiles": results.profiles,
        "targets": [{"target": t.name, "met": t.met, "detail": t.detail} for t in found],
    }
    path = RESULTS / (f"{started:%Y%m%dT%H%M%SZ}" + ("-quick" if plan.quick else "") + ".json")
    path.write_text(json.dumps(document, indent=2) + "\n")
    # latest.json is a complete full run (the one docs/performance.md quotes); anything less gets its own.
    latest = RESULTS / f"latest{'-quick' if plan.quick else ('-partial' if plan.only else '')}.json"
    say()
    if results.interrupted:
        say(f"JSON: {path.relative_to(ROOT)} (interrupted: {latest.name} left as it was)")
    else:
        shutil.copyfile(path, latest)
        say(f"JSON: {path.relative_to(ROOT)} (and {latest.relative_to(ROOT)})")
    say(f"logs of this run: {log_dir.relative_to(ROOT)}/")
    return 130 if results.interrupted else 0


def _latency(result: dict[str, Any]) -> str:
    if "p99_ms" not in result:
        return str(result.get("status"))
    return (
        f"p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
        f"{result['ok_per_s']:,.0f} 2xx/s, {result['non_2xx']} non-2xx, {result.get('errors', 0)} errors, "
        f"client late p99 {result.get('late_p99_ms', 0):.1f} ms"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Instructions per event on the event route, counted by valgrind's callgrind (noise-free).

``python -m bench.instructions`` (``make bench-instructions``) runs this module under
``valgrind --tool=callgrind`` twice per case, posting a few events and then ``--events``
more, and prints the difference per event, so interpreter start-up, imports and
connecting cancel out. Timings on this shared machine move by tens of percent from
one run to the next; instruction counts repeat within a fraction of a percent.

What runs is the real app (``create_app``: auth, admission, parsing, filters, the
dedupe window, routing, metrics, the JSON log line to /dev/null) behind aiohttp's
server on 127.0.0.1 and uvloop, with the real aiokafka producer and the bridge's
batching writing to :class:`bench.kafka_stub.KafkaStub`, a broker reduced to the
socket that acknowledges at once. A client in the same loop posts on one keep-alive
connection: one event per request (``single``) or arrays of 100 (``batch``). Its
work is counted too, the same for every version.

The naive bridge (``naive``: aiohttp + ``send_and_wait``) and a bare aiohttp
handler (``bare``) run under the same harness, for the ratios docs/performance.md
reports (``--cases naive bare``).

``--check`` compares with ``bench/instructions-budget.json`` (each case's measured
count plus 10 %) and exits 1 when a case is over its budget; ``make test`` runs it
(``make bench-instructions``). ``--write-budget`` (``make bench-instructions BUDGET=write``)
stores what was measured: do that in the commit that makes the hot path cheaper, or that
knowingly makes it dearer, with the before and after in its message. ``--bridge DIR`` counts another checkout
(a ``git worktree`` of an older commit, say).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The event posted (a real Altinn Correspondence event, ~0.5 KiB).
EVENT = ROOT / "tests/fixtures/altinn-events/valid/06-correspondencepublished.json"
BUDGET = ROOT / "bench/instructions-budget.json"
#: Headroom of a budget over the count it was measured at.
HEADROOM = 0.10
BATCH_SIZE = 100
#: Keep-alive connections posting at once (as wrk's do in ``make bench``), so records share Kafka batches.
CONNECTIONS = {"single": 16, "batch": 4, "naive": 16, "bare": 16}
#: Requests before counting starts: code paths taken once (first connection, metadata) are in both runs.
_WARM_UP = 50
#: Events of the shorter run of each pair; the difference to the longer one is counted.
_BASE = 100
CASES = ("single", "batch", "naive", "bare")
#: Production's way in: the token in the URL path, as Altinn calls it.
TOKEN = "bench-token-0123456789abcdefghij"  # noqa: S105 - a bench token for 127.0.0.1


def _bodies(count: int, batch: int, first: int = 0) -> list[bytes]:
    """``count`` events with distinct ids, one per body or ``batch`` per JSON array."""
    template = EVENT.read_bytes()
    events = [
        re.sub(rb'"id": "[^"]+"', b'"id": "bench-%08d"' % n, template, count=1)
        for n in range(first, first + count)
    ]
    if batch == 1:
        return events
    return [b"[" + b",".join(events[i : i + batch]) + b"]" for i in range(0, count, batch)]


async def _post(port: int, bodies: list[bytes], content_type: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for body in bodies:
            writer.write(
                b"POST /api/v1/events/%s HTTP/1.1\r\nHost: bench\r\nContent-Type: %s\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (TOKEN.encode(), content_type, len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            length = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
    finally:
        writer.close()


def _bridge_app(bootstrap: str) -> Any:
    from bridge.app import create_app  # noqa: PLC0415 - the version on sys.path
    from bridge.config import LogLevel, Settings  # noqa: PLC0415
    from bridge.logs import configure_logging  # noqa: PLC0415

    configure_logging(LogLevel.INFO, Path(os.devnull).open("wb"), cache_loggers=True)  # noqa: SIM115 - for the run
    settings = Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_AUTH_TOKENS": TOKEN, "BRIDGE_DEDUPE": "memory"}
    )
    return create_app(settings)


def _comparison_app(module: str, bootstrap: str) -> Any:
    app_module = __import__(f"bench.{module}", fromlist=["make_app"])
    return app_module.make_app(argparse.Namespace(bootstrap=bootstrap))


async def _run(case: str, count: int) -> None:
    from aiohttp import web  # noqa: PLC0415

    from bench.kafka_stub import KafkaStub  # noqa: PLC0415

    batch = BATCH_SIZE if case == "batch" else 1
    content_type = b"application/cloudevents-batch+json" if batch > 1 else b"application/json"
    factories: dict[str, Callable[[str], Any]] = {
        "single": _bridge_app,
        "batch": _bridge_app,
        "naive": lambda b: _comparison_app("naive_server", b),
        "bare": lambda b: _comparison_app("bare_server", b),
    }
    async with KafkaStub() as kafka:
        runner = web.AppRunner(factories[case](kafka.bootstrap), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            for _ in range(600):  # the bridge answers 503 until its producer has connected
                if (await _status(port, "/readyz")) in (200, 404):
                    break
                await asyncio.sleep(0.05)
            for bodies in (_bodies(_WARM_UP * batch, batch), _bodies(count, batch, _WARM_UP * batch)):
                lanes = CONNECTIONS[case]
                await asyncio.gather(*(_post(port, bodies[i::lanes], content_type) for i in range(lanes)))
        finally:
            await runner.cleanup()
        if os.environ.get("BENCH_STUB_STATS"):
            print(f"{case}: {kafka.records} records in {kafka.requests} produce requests", file=sys.stderr)  # noqa: T201
        if case != "bare" and kafka.records < count:
            raise RuntimeError(f"{kafka.records} records reached the stub, expected {count} or more")


async def _status(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


def _count(case: str, events: int, checkout: str) -> int:
    """Instructions callgrind counts for a whole run posting ``events`` (after the warm-up)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={out}"]
        command += [
            sys.executable,
            "-m",
            "bench.instructions",
            "--run",
            case,
            str(events),
            "--bridge",
            checkout,
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([checkout, str(ROOT)])}
        done = subprocess.run(command, check=False, capture_output=True, env=env, cwd=ROOT)  # noqa: S603
        if done.returncode:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-15:]
            raise SystemExit(f"the counted run ({case}) failed:\n" + "\n".join(tail))
        summary = next(
            line for line in out.read_text().splitlines() if line.startswith(("summary:", "totals:"))
        )
        return int(summary.split()[1])


def measure(case: str, events: int, checkout: str) -> float:
    """Instructions per event of ``case``: the difference of two runs, per extra event."""
    return (_count(case, _BASE + events, checkout) - _count(case, _BASE, checkout)) / events


def main() -> int:
    """Count, check against the budget, or (``--run``) be the program counted."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1000, help="events in each measured difference")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=["single", "batch"])
    parser.add_argument("--bridge", default=str(ROOT), help="checkout whose bridge package is counted")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when a case exceeds {BUDGET.name}")
    parser.add_argument("--write-budget", action="store_true", help="store the counts (+10 %%) as the budget")
    parser.add_argument("--run", nargs=2, metavar=("CASE", "EVENTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, args.bridge)
    if args.run is not None:
        import uvloop  # noqa: PLC0415 - the loop the bridge serves on

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_run(args.run[0], int(args.run[1])))
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install valgrind (make bench-instructions does)")
    budget = json.loads(BUDGET.read_text()) if BUDGET.exists() else {}
    counted = {case: measure(case, args.events, args.bridge) for case in args.cases}
    over = []
    for case, per_event in counted.items():
        limit = budget.get(case, {}).get("budget")
        verdict = "" if limit is None else f"  budget {limit:,.0f}"
        if limit is not None and per_event > limit:
            over.append(case)
            verdict += "  OVER"
        print(f"{case:>6}: {per_event:>10,.0f} instructions per event{verdict}")  # noqa: T201
    if "naive" in counted and "single" in counted:
        print(f"single/naive = {counted['single'] / counted['naive']:.2f} (instructions per event)")  # noqa: T201
    if args.write_budget:
        for case, per_event in counted.items():
            budget[case] = {"measured": round(per_event), "budget": round(per_event * (1 + HEADROOM))}
        BUDGET.write_text(json.dumps(budget, indent=2) + "\n")
    if args.check and over:
        print(f"over budget ({BUDGET.relative_to(ROOT)}): {', '.join(over)}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run an aiohttp app for the comparison servers, with 1 or N worker processes.

N > 1 works like the bridge's ``--workers``: N copies of the server share the
port with SO_REUSEPORT and the kernel spreads connections over them; the parent
only forwards SIGTERM/SIGINT and waits. The event loop is asyncio's or uvloop's,
matched by the bench to the loop the bridge runs on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from aiohttp import web

#: Set in the environment of worker processes (so they bind with SO_REUSEPORT).
WORKER_ENV = "BENCH_SERVER_WORKER"


def arguments(description: str) -> argparse.Namespace:
    """The command line every comparison server takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--bootstrap", default="", help="Kafka bootstrap servers (naive server)")
    return parser.parse_args()


def run(module: str, description: str, make_app: Callable[[argparse.Namespace], web.Application]) -> int:
    """Serve ``make_app(args)`` on 127.0.0.1 until SIGTERM/SIGINT; start workers if asked."""
    args = arguments(description)
    if args.workers > 1 and WORKER_ENV not in os.environ:
        return _supervise(module, args.workers)
    loop_factory = None
    if args.loop == "uvloop":
        import uvloop  # noqa: PLC0415 - only when asked for

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve(make_app(args), args.port))


async def _serve(app: web.Application, port: int) -> int:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_port=WORKER_ENV in os.environ)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


def _supervise(module: str, workers: int) -> int:
    env = {**os.environ, WORKER_ENV: "1"}
    children = [
        subprocess.Popen([sys.executable, "-m", module, *sys.argv[1:]], env=env)  # noqa: S603 - ourselves
        for _ in range(workers)
    ]

    def forward(signum: int, _: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(abs(child.wait()) for child in children)

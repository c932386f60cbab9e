"""Command line: ``altinn-bridge [serve|topics|check-config]``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence

import orjson

from bridge import __version__
from bridge.config import ConfigError, Settings, unknown_variables
from bridge.logs import configure_logging, get_logger
from bridge.routing import topics_to_provision


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="altinn-bridge",
        description="Receive Altinn 3 Correspondence events by webhook and publish them to Kafka. "
        "Configured by environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the webhook server (the default)")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes sharing the port (default: BRIDGE_WORKERS, 1)",
    )
    sub.add_parser(
        "topics",
        help="print every Kafka topic this configuration writes to; the dedupe state topic, "
        "last, needs cleanup.policy=compact,delete and retention.ms above the dedupe window",
    )
    sub.add_parser("check-config", help="validate the configuration and print it as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``altinn-bridge`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"altinn-bridge: {exc}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
    command = args.command or "serve"
    if command == "topics":
        print("\n".join(topics_to_provision(settings)))  # noqa: T201 - the command's output
        return 0
    if command == "check-config":
        print(orjson.dumps(settings.describe(), option=orjson.OPT_INDENT_2).decode())  # noqa: T201
        return 0

    workers = getattr(args, "workers", None) or settings.http.workers
    if workers < 1:
        print("altinn-bridge: --workers must be at least 1", file=sys.stderr)  # noqa: T201
        return 2
    return _run(settings, workers)


def _run(settings: Settings, workers: int) -> int:
    configure_logging(settings.log_level, cache_loggers=True)
    log = get_logger("bridge.cli")
    unknown = unknown_variables(os.environ)
    if unknown:
        log.warning("unknown BRIDGE_* variables ignored (typo?)", names=unknown)
    # Imported here to keep `topics`/`check-config` free of aiohttp and aiokafka.
    from bridge.workers import WORKER_ENV, supervise  # noqa: PLC0415

    if workers > 1 and WORKER_ENV not in os.environ:
        return supervise(settings, workers)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_serve(settings))
    except OSError as exc:
        log.exception("cannot listen", error=str(exc))
        return 1


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The uvloop event loop when it is installed (the `speed` extra), else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(settings: Settings) -> int:
    from bridge.server import serve  # noqa: PLC0415 - keep `topics`/`check-config` free of aiohttp

    return await serve(settings)

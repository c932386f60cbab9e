"""Command line: ``altinn-bridge [serve|topics|check-config|subscription …|reconcile …]``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Mapping, Sequence

import orjson

from bridge import __version__
from bridge.config import ConfigError, LogLevel, Settings, unknown_variables
from bridge.logs import configure_logging, get_logger
from bridge.routing import topics_to_provision


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="altinn-bridge",
        description="Receive Altinn 3 Correspondence events by webhook and publish them to Kafka. "
        "Configured by environment variables (docs/configuration.md).",
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
    _add_subscription_parser(sub)
    _add_reconcile_parser(sub)
    return parser


def _add_reconcile_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reconcile = sub.add_parser(
        "reconcile",
        help="pull a resource's events from Altinn once and publish those no push delivered "
        "(KAFKA_*/BRIDGE_* and MASKINPORTEN_*/ALTINN_* variables; "
        'see docs/operations.md, "Reconciling from the pull API")',
        description="Read Altinn's pull API from the stored cursor (or --after / --from-start) until caught "
        "up, through the same validation, filters, dedupe and publishing as a push, storing the cursor as it "
        "goes. Progress on stderr, a JSON summary on stdout. Exits 1 if another process holds the cursor.",
    )
    reconcile.add_argument(
        "--resource",
        type=_resource,
        help="the resource's URN, urn:altinn:resource:<id> (default: BRIDGE_RECONCILE_RESOURCE)",
    )
    start = reconcile.add_mutually_exclusive_group()
    start.add_argument("--after", metavar="ID", help="start after this event id instead of the stored cursor")
    start.add_argument(
        "--from-start", action="store_true", help="start from Altinn's oldest event (kept 90 days)"
    )
    reconcile.add_argument(
        "--size",
        type=_page_size,
        default=None,
        metavar="N",
        help="events per page, 1-1000 (default: BRIDGE_RECONCILE_PAGE_SIZE)",
    )
    reconcile.add_argument(
        "--max-age-s",
        type=float,
        default=None,
        metavar="S",
        help="skip events older than S seconds (default: the dedupe window, which cannot tell older pushed "
        "events apart); 0: publish whatever age (back-fill; older pushed events are published again)",
    )


def _resource(raw: str) -> str:
    if not raw.startswith("urn:altinn:resource:") or raw == "urn:altinn:resource:":
        raise argparse.ArgumentTypeError(f"{raw!r} is not a resource URN (urn:altinn:resource:<id>)")
    return raw


def _page_size(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:  # noqa: PLR2004 - Altinn's largest page
        raise argparse.ArgumentTypeError("a number from 1 to 1000")
    return int(raw)


def _add_subscription_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subscription = sub.add_parser(
        "subscription",
        help="create, list, show or delete Altinn Events subscriptions (Maskinporten client in "
        'MASKINPORTEN_* variables, ALTINN_ENVIRONMENT; see docs/operations.md, "Subscribing in Altinn")',
        description="Manage Altinn Events subscriptions. Results are printed as JSON on stdout, notes on "
        "stderr. Altinn caches subscriptions: changes take up to an hour to take effect.",
    )
    actions = subscription.add_subparsers(dest="action", required=True, metavar="{create,list,show,delete}")
    dry_run = argparse.ArgumentParser(add_help=False)
    dry_run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the requests (Authorization redacted) without obtaining a token or sending anything",
    )
    create = actions.add_parser(
        "create",
        parents=[dry_run],
        help="subscribe an endpoint to a resource's events (one subscription per --type)",
    )
    create.add_argument(
        "--endpoint",
        required=True,
        help="absolute https URL Altinn pushes to: https://<host>/api/v1/events/<token>",
    )
    create.add_argument("--resource", required=True, help="the resource's URN, urn:altinn:resource:<id>")
    create.add_argument("--subject", help="only events about this subject (exact, e.g. an organisation URN)")
    create.add_argument(
        "--type",
        action="append",
        metavar="TYPE",
        help="one event type (full or short name, e.g. correspondencepublished); repeat for several, one "
        "subscription each. Without it: one subscription for every type",
    )
    create.add_argument(
        "--include-subunits", action="store_true", help="also the subunits of --subject (needs --subject)"
    )
    # Accepted only to explain why they are refused: Altinn answers 400 to both.
    create.add_argument(
        "--source-filter", help="refused: Altinn rejects it; set BRIDGE_FILTER_SOURCES instead"
    )
    create.add_argument(
        "--alternative-subject-filter",
        help="refused: Altinn rejects it; set BRIDGE_FILTER_ALTERNATIVESUBJECTS instead",
    )
    actions.add_parser(
        "list", parents=[dry_run], help="every subscription of this client, unvalidated included"
    )
    for name, what in (
        ("show", "one subscription, with its validation status"),
        ("delete", "delete a subscription"),
    ):
        action = actions.add_parser(name, parents=[dry_run], help=what)
        action.add_argument("id", type=_subscription_id, help="the subscription's id (a number)")


def _subscription_id(raw: str) -> str:
    # A number, as Altinn's ids are: anything else would end up in the request's path.
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"{raw!r} is not a subscription id (a number, as `list` shows)")
    return raw


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:  # noqa: PLR0911 - one exit per command
    """Entry point of the ``altinn-bridge`` console script; ``env`` defaults to ``os.environ``."""
    args = _parser().parse_args(argv)
    env = os.environ if env is None else env
    if args.command == "subscription":
        # Imported here to keep the server's commands free of the Altinn client (and it of Kafka
        # settings: subscribing needs no KAFKA_* or BRIDGE_* variable).
        from bridge.altinn.commands import run  # noqa: PLC0415

        return run(args, env, out=sys.stdout, err=sys.stderr)
    try:
        settings = Settings.from_env(env)
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
    if command == "reconcile":
        return _reconcile(settings, args, env)

    workers = getattr(args, "workers", None) or settings.http.workers
    if workers < 1:
        print("altinn-bridge: --workers must be at least 1", file=sys.stderr)  # noqa: T201
        return 2
    return _run(settings, workers, env)


def _run(settings: Settings, workers: int, env: Mapping[str, str]) -> int:
    configure_logging(settings.log_level, cache_loggers=True)
    log = get_logger("bridge.cli")
    unknown = unknown_variables(env)
    if unknown:
        log.warning("unknown BRIDGE_* variables ignored (typo?)", names=unknown)
    # Imported here to keep `topics`/`check-config` free of aiohttp and aiokafka.
    from bridge.workers import supervise  # noqa: PLC0415

    if workers > 1 and not settings.is_worker:
        return supervise(settings, workers, env)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_serve(settings))
    except OSError as exc:
        log.exception("cannot listen", error=str(exc))
        return 1


def _reconcile(settings: Settings, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    # Imported here, like the subscription commands: only this command needs the Altinn client.
    from bridge.altinn.settings import AltinnSettings  # noqa: PLC0415
    from bridge.reconcile_runner import run_once  # noqa: PLC0415

    resource = args.resource or settings.reconcile.resource
    if resource is None:
        message = "altinn-bridge reconcile: --resource (or BRIDGE_RECONCILE_RESOURCE) is required"
        print(message, file=sys.stderr)  # noqa: T201
        return 2
    try:
        altinn = settings.reconcile.altinn or AltinnSettings.from_env(env)
    except ConfigError as exc:
        print(f"altinn-bridge reconcile: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    # Logs on stderr, beside the progress lines; only warnings unless debugging.
    level = LogLevel.DEBUG if settings.log_level is LogLevel.DEBUG else LogLevel.WARNING
    configure_logging(level, stream=sys.stderr.buffer)
    after = "0" if args.from_start else args.after
    max_age_s = settings.dedupe.window_s if args.max_age_s is None else (args.max_age_s or None)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(
            run_once(
                settings,
                altinn,
                resource=resource,
                after=after,
                size=args.size or settings.reconcile.page_size,
                max_age_s=max_age_s,
            )
        )


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

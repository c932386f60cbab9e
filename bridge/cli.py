"""Command line: ``altinn-bridge [serve|topics|check-config|doctor|subscription …|reconcile …|redrive …]``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import orjson

from bridge import __version__
from bridge.config import ConfigError, LogLevel, Settings, unknown_variables
from bridge.events import parse_time
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
    doctor = sub.add_parser(
        "doctor",
        help="check this configuration against Kafka and Altinn before go-live (one row per check); "
        'exit 0 ok, 1 a check failed, 2 configuration error (docs/operations.md, "Before go-live")',
    )
    doctor.add_argument("--json", action="store_true", help="print the rows as JSON")
    _add_subscription_parser(sub)
    _add_reconcile_parser(sub)
    _add_redrive_parser(sub)
    return parser


def _add_redrive_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    redrive = sub.add_parser(
        "redrive",
        help="send the records of a topic the bridge wrote (dead letters, unknown types, …) through "
        'the pipeline again (see docs/operations.md, "Redrive")',
        description="Read the records of TOPIC that are present when it starts and send each one's event "
        "through the same validation, filters, dedupe, routing and publishing as a push. Records still "
        "invalid, and events whose route is TOPIC itself, stay where they are and are counted. Progress is "
        "kept in the consumer group <KAFKA_CLIENT_ID>.redrive.<TOPIC>: a second run continues where the "
        "last stopped. Progress on stderr, a JSON summary on stdout. Exit codes: 0 done, 1 Kafka failed, "
        "2 configuration, 130 stopped by a signal (what was acknowledged is committed).",
    )
    redrive.add_argument("--from", dest="source", required=True, metavar="TOPIC", help="the topic to read")
    redrive.add_argument(
        "--dry-run",
        action="store_true",
        help="decide every record as a run would and print the counts; write and commit nothing",
    )
    redrive.add_argument(
        "--since",
        type=_instant,
        metavar="WHEN",
        help="pass over records written before WHEN (RFC 3339, or a duration ago: 90m, 12h, 7d); "
        "the group's position moves past them",
    )
    redrive.add_argument(
        "--until",
        type=_instant,
        metavar="WHEN",
        help="stop each partition at its first record written after WHEN; those stay for a later run",
    )
    redrive.add_argument(
        "--limit", type=_positive, metavar="N", help="at most N records this run; the next run continues"
    )


_AGO_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _instant(raw: str) -> float:
    """An RFC 3339 date-time, or ``<number><s|m|h|d>`` ago; epoch seconds."""
    number, unit = raw[:-1], raw[-1:].lower()
    if unit in _AGO_UNITS and number.replace(".", "", 1).isdigit():
        return time.time() - float(number) * _AGO_UNITS[unit]
    try:
        return parse_time(raw).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is neither an RFC 3339 date-time (2026-08-20T08:00:00Z) "
            "nor a duration ago (90m, 12h, 7d)"
        ) from None


def _positive(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError("a whole number of at least 1")
    return int(raw)


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


#: Commands that read every setting: ``serve``, and those that check what ``serve`` reads.
_SERVING_COMMANDS = frozenset({"serve", "check-config", "doctor"})


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:  # noqa: PLR0911 - one exit per command
    """Entry point of the ``altinn-bridge`` console script; ``env`` defaults to ``os.environ``."""
    args = _parser().parse_args(argv)
    env = os.environ if env is None else env
    if args.command == "subscription":
        # Imported here to keep the server's commands free of the Altinn client (and it of Kafka
        # settings: subscribing needs no KAFKA_* or BRIDGE_* variable).
        from bridge.altinn.commands import run  # noqa: PLC0415

        return run(args, env, out=sys.stdout, err=sys.stderr)
    command = args.command or "serve"
    try:
        # The one-shot commands serve no HTTP: they do not read (or demand) the server's settings.
        settings = Settings.from_env(env, serving=command in _SERVING_COMMANDS)
    except ConfigError as exc:
        print(f"altinn-bridge: {exc}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
    if command == "topics":
        print("\n".join(topics_to_provision(settings)))  # noqa: T201 - the command's output
        return 0
    if command == "check-config":
        return _check_config(settings, env)
    if command == "reconcile":
        return _reconcile(settings, args, env)
    if command == "redrive":
        return _redrive(settings, args)
    if command == "doctor":
        from bridge.doctor import run as doctor  # noqa: PLC0415 - keep the other commands free of it

        return doctor(settings, env, as_json=args.json, out=sys.stdout)

    workers = getattr(args, "workers", None) or settings.http.workers
    if workers < 1:
        print("altinn-bridge: --workers must be at least 1", file=sys.stderr)  # noqa: T201
        return 2
    return _run(settings, workers, env)


def _check_config(settings: Settings, env: Mapping[str, str]) -> int:
    unknown = unknown_variables(env)
    if unknown:  # warned about as `serve` does, on stderr: stdout is the JSON
        names = ", ".join(unknown)
        message = f"altinn-bridge: warning: unknown BRIDGE_* variables ignored (typo?): {names}"
        print(message, file=sys.stderr)  # noqa: T201
    print(orjson.dumps(settings.describe(), option=orjson.OPT_INDENT_2).decode())  # noqa: T201
    return 0


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


def _redrive(settings: Settings, args: argparse.Namespace) -> int:
    from bridge.redrive import EXIT_INTERRUPTED, Options, run_once  # noqa: PLC0415 - only this command

    if args.since is not None and args.until is not None and args.since >= args.until:
        print("altinn-bridge redrive: --since must be before --until", file=sys.stderr)  # noqa: T201
        return 2
    # Logs on stderr, beside the progress; only warnings unless debugging.
    level = LogLevel.DEBUG if settings.log_level is LogLevel.DEBUG else LogLevel.WARNING
    configure_logging(level, stream=sys.stderr.buffer)
    options = Options(args.source, args.dry_run, args.since, args.until, args.limit)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        try:
            return runner.run(run_once(settings, options))
        except asyncio.CancelledError:  # a second SIGINT/SIGTERM: stopped without a summary
            print("altinn-bridge redrive: aborted", file=sys.stderr)  # noqa: T201
            return EXIT_INTERRUPTED


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The uvloop event loop when it is installed (a runtime dependency), else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(settings: Settings) -> int:
    from bridge.server import serve  # noqa: PLC0415 - keep `topics`/`check-config` free of aiohttp

    return await serve(settings)

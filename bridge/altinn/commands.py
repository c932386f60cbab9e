"""``altinn-bridge subscription create|list|show|delete``: what the commands do once parsed.

Results go to stdout as JSON (one document per subscription, so ``jq`` reads
them); what a person should know — validation status, Altinn's hour of caching,
warnings, errors — goes to stderr. The bridge's token inside an ``endPoint`` is
shown as its fingerprint, as the bridge's own logs show it. Exit codes: 0 done,
2 usage or configuration, 1 Maskinporten or Altinn said no.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TextIO

import aiohttp
import orjson

from bridge.altinn.errors import AltinnError
from bridge.altinn.events_api import EventsApi, Retrying
from bridge.altinn.settings import AltinnSettings
from bridge.altinn.subscriptions import REFUSED_FILTERS, Refused, plan, redact
from bridge.altinn.tokens import EXCHANGE_PATH, TokenProvider
from bridge.envconfig import ConfigError

#: Bound on one HTTP call to Maskinporten or Altinn (connect + answer); retries come on top.
REQUEST_TIMEOUT_S: Final = 30.0
CACHE_NOTE: Final = (
    "Altinn caches subscriptions: a change takes up to an hour to take effect (new subscriptions "
    "to start receiving, deleted ones to stop)."
)
_PROG: Final = "altinn-bridge subscription"

Action = Callable[[EventsApi], Awaitable[int]]


def run(args: argparse.Namespace, env: Mapping[str, str], *, out: TextIO, err: TextIO) -> int:
    """Run the parsed ``subscription`` command against the Altinn that ``env`` configures."""
    refused = [
        name
        for name, (option, _) in REFUSED_FILTERS.items()
        if getattr(args, _dest(option), None) is not None
    ]
    bodies: list[dict[str, Any]] = []
    if args.action == "create":
        try:
            planned = plan(
                endpoint=args.endpoint,
                resource=args.resource,
                subject=args.subject,
                types=args.type or (),
                include_subunits=args.include_subunits,
                refused_filters=refused,
            )
        except Refused as exc:
            for problem in exc.problems:
                print(f"{_PROG} create: {problem}", file=err)
            return 2
        for warning in planned.warnings:
            print(warning, file=err)
        bodies = planned.bodies
    try:
        settings = AltinnSettings.from_env(env, credentials=not args.dry_run)
    except ConfigError as exc:
        print(f"{_PROG}: {exc}", file=err)
        return 2
    if args.dry_run:
        return _dry_run(args, settings, bodies, out=out, err=err)
    action = _actions(args, bodies, out=out, err=err)[args.action]
    try:
        return asyncio.run(_with_api(settings, action, err=err))
    except ConfigError as exc:
        print(f"{_PROG}: {exc}", file=err)
        return 2
    except AltinnError as exc:
        print(f"{_PROG} {args.action}: {exc}", file=err)
        return 1


def _dest(option: str) -> str:
    return option.removeprefix("--").replace("-", "_")


async def _with_api(settings: AltinnSettings, action: Action, *, err: TextIO) -> int:
    if settings.maskinporten is None:  # only a dry run is built without credentials
        raise ConfigError(
            ["MASKINPORTEN_CLIENT_ID, MASKINPORTEN_KEY_ID and MASKINPORTEN_PRIVATE_KEY_FILE are required"]
        )

    def on_retry(r: Retrying) -> None:
        attempt = f"attempt {r.attempt + 1} of {r.attempts}"
        print(f"{r.method} {r.url}: {r.reason}; retrying in {r.delay_s:g} s ({attempt})", file=err)

    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        tokens = TokenProvider(session, settings.maskinporten, settings.platform_url)
        api = EventsApi(session, settings.platform_url, tokens, on_retry=on_retry)
        return await action(api)


def _actions(
    args: argparse.Namespace, bodies: list[dict[str, Any]], *, out: TextIO, err: TextIO
) -> dict[str, Action]:
    def show_json(value: Any) -> None:
        print(orjson.dumps(redact(value), option=orjson.OPT_INDENT_2).decode(), file=out)

    async def create(api: EventsApi) -> int:
        created: list[dict[str, Any]] = []
        for body in bodies:
            try:
                subscription = await api.create_subscription(body)
            except AltinnError:
                if created:
                    print(
                        f"{len(created)} of {len(bodies)} subscription(s) created before the failure below; "
                        "running the same command again is safe (Altinn returns an identical subscription "
                        "instead of creating it twice)",
                        file=err,
                    )
                raise
            created.append(subscription)
            show_json(subscription)
            what = body.get("typeFilter") or "every event type"
            print(
                f"subscription {subscription.get('id')} for {what}: validated: "
                f"{_json(subscription.get('validated'))}",
                file=err,
            )
        if any(s.get("validated") is not True for s in created):
            print(
                "Altinn now sends a validation event (platform.events.validatesubscription) to the endpoint; "
                "once the bridge has answered it, `altinn-bridge subscription show <id>` shows "
                '"validated": true. A subscription that stays unvalidated receives nothing.',
                file=err,
            )
        print(CACHE_NOTE, file=err)
        return 0

    async def list_(api: EventsApi) -> int:
        listing = await api.list_subscriptions()
        show_json(listing)
        subscriptions = listing.get("subscriptions")
        items = subscriptions if isinstance(subscriptions, list) else []
        validated = sum(1 for s in items if isinstance(s, dict) and s.get("validated") is True)
        print(
            f"{listing.get('count', len(items))} subscription(s): {validated} validated, "
            f"{len(items) - validated} not validated",
            file=err,
        )
        return 0

    async def show(api: EventsApi) -> int:
        subscription = await api.get_subscription(args.id)
        show_json(subscription)
        validated = subscription.get("validated")
        note = (
            ""
            if validated is True
            else " (Altinn pushes nothing to it until the endpoint answers its validation event)"
        )
        print(f"subscription {args.id}: validated: {_json(validated)}{note}", file=err)
        return 0

    async def delete(api: EventsApi) -> int:
        await api.delete_subscription(args.id)
        print(f"subscription {args.id} deleted. {CACHE_NOTE}", file=err)
        return 0

    return {"create": create, "list": list_, "show": show, "delete": delete}


def _dry_run(
    args: argparse.Namespace,
    settings: AltinnSettings,
    bodies: list[dict[str, Any]],
    *,
    out: TextIO,
    err: TextIO,
) -> int:
    base = settings.platform_url + "/events/api/v1/subscriptions"
    requests: list[tuple[str, str, dict[str, Any] | None]]
    if args.action == "create":
        requests = [("POST", base, body) for body in bodies]
    elif args.action == "list":
        requests = [("GET", base, None)]
    else:
        requests = [("GET" if args.action == "show" else "DELETE", f"{base}/{args.id}", None)]
    for n, (method, url, body) in enumerate(requests):
        if n:
            print(file=out)
        print(f"{method} {url}", file=out)
        print("Authorization: Bearer <redacted: an Altinn token, not obtained in a dry run>", file=out)
        if body is not None:
            print("Content-Type: application/json", file=out)
            print(file=out)
            print(orjson.dumps(redact(body), option=orjson.OPT_INDENT_2).decode(), file=out)
    mp = settings.maskinporten
    token_from = f"Maskinporten ({mp.token_url}, scopes {' '.join(mp.scopes)!r})" if mp else "Maskinporten"
    print(
        f"dry run: nothing sent and no token obtained. A real run first gets a token from {token_from} "
        f"and exchanges it at {settings.platform_url}{EXCHANGE_PATH}.",
        file=err,
    )
    return 0


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()

"""``altinn-bridge doctor``'s Altinn checks, when the Maskinporten client is configured.

The grant and its scopes, the token exchange, the subscriptions of the configured
resources (there, validated, pushing to a token the bridge accepts) and one page
of the pull API. Read-only: nothing is created or changed at Altinn. Tokens are
never printed; an endpoint's token is named by its fingerprint, as the bridge logs it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import jwt

from bridge.altinn.errors import AltinnError
from bridge.altinn.events_api import EventsApi, RetryPolicy
from bridge.altinn.maskinporten import load_private_key, request_token
from bridge.altinn.settings import DEFAULT_SCOPES, AltinnSettings
from bridge.altinn.subscriptions import redact_text
from bridge.altinn.tokens import exchange
from bridge.auth import fingerprint
from bridge.config import Settings
from bridge.doctor_report import Row, fail, ok, skipped, warn
from bridge.envconfig import ConfigError
from bridge.server_settings import AuthMode

#: Bound on one call to Maskinporten or Altinn, in seconds.
REQUEST_TIMEOUT_S: Final = 20.0
#: What the bridge's Altinn commands (subscription, reconcile) need granted.
NEEDED_SCOPES: Final = frozenset(DEFAULT_SCOPES.split())
_PATH_TOKEN: Final = re.compile(r"/api/v1/events/([^/?#\s]+)")
_CHECKS: Final = ("altinn.token", "altinn.subscriptions", "altinn.pull")


class _Fixed:
    """The one token the doctor obtained: a rejected one is not replaced (the check fails instead)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token

    async def refresh(self, rejected: str) -> str:  # noqa: ARG002 - the TokenSource protocol
        return self._token


async def altinn_rows(settings: Settings, env: Mapping[str, str]) -> list[Row]:
    """The Altinn checks; all skipped when no Maskinporten variable is set."""
    altinn = settings.reconcile.altinn
    if altinn is None:
        if not any(env.get(n) for n in ("MASKINPORTEN_CLIENT_ID", "MASKINPORTEN_KEY_ID")):
            return [skipped(name, "MASKINPORTEN_* not set: Altinn not checked") for name in _CHECKS]
        try:
            altinn = AltinnSettings.from_env(env)
        except ConfigError as exc:
            return [
                fail("altinn.config", "; ".join(exc.problems), "set every MASKINPORTEN_* variable it names")
            ]
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        token_row, token = await check_token(session, altinn)
        rows = [token_row]
        if token is None:
            return rows + [skipped(n, "no Altinn token (altinn.token)") for n in _CHECKS[1:]]
        api = EventsApi(session, altinn.platform_url, _Fixed(token), retry=RetryPolicy(attempts=2))
        resources = _resources(settings)
        rows.append(await check_subscriptions(api, settings, resources))
        rows.append(await check_pull(api, settings, resources))
    return rows


def _resources(settings: Settings) -> list[str]:
    """The configured resources: the reconciled one and the resource filter's."""
    found = [settings.reconcile.resource] if settings.reconcile.resource else []
    return list(dict.fromkeys([*found, *settings.filters.resources]))


async def check_token(session: aiohttp.ClientSession, altinn: AltinnSettings) -> tuple[Row, str | None]:
    """Maskinporten's grant with the needed scopes, then Altinn's exchange; the Altinn token."""
    name = "altinn.token"
    mp = altinn.maskinporten
    if mp is None:  # built with credentials: never
        return skipped(name, "no Maskinporten client"), None
    try:
        key = load_private_key(mp.private_key_file)
        granted = await request_token(session, mp, key)
    except ConfigError as exc:
        return fail(
            name, "; ".join(exc.problems), "point MASKINPORTEN_PRIVATE_KEY_FILE at the client's RSA key"
        ), None
    except AltinnError as exc:
        return (
            fail(
                name,
                f"Maskinporten grant: {exc}",
                "check MASKINPORTEN_CLIENT_ID, MASKINPORTEN_KEY_ID, the key and MASKINPORTEN_SCOPES against "
                "the client registered in Maskinporten (Samarbeidsportalen)",
            ),
            None,
        )
    scopes = _granted_scopes(granted.value)
    missing = sorted(NEEDED_SCOPES - scopes) if scopes is not None else []
    if missing:
        return (
            fail(
                name,
                f"Maskinporten granted {' '.join(sorted(scopes or ())) or 'no scope'}; "
                f"missing {' '.join(missing)}",
                f"add {' '.join(missing)} to MASKINPORTEN_SCOPES and to the client in Maskinporten",
            ),
            None,
        )
    try:
        token = await exchange(session, altinn.platform_url, granted)
    except AltinnError as exc:
        return fail(name, f"token exchange: {exc}", "register the Maskinporten client for Altinn"), None
    shown = " ".join(sorted(scopes)) if scopes is not None else "not readable from the token"
    row = ok(name, f"Maskinporten granted scopes: {shown}; Altinn exchanged the token ({altinn.environment})")
    if scopes is None:
        row = warn(name, row.detail, "check that the client has altinn:events.subscribe")
    return row, token


def _granted_scopes(token: str) -> set[str] | None:
    """The ``scope`` claim of a Maskinporten token (a JWT); ``None`` if it cannot be read."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    scope = claims.get("scope")
    return set(scope.split()) if isinstance(scope, str) else None


async def check_subscriptions(api: EventsApi, settings: Settings, resources: list[str]) -> Row:
    """Each configured resource has subscriptions, validated, whose endpoint carries an accepted token."""
    name = "altinn.subscriptions"
    try:
        listing = await api.list_subscriptions()
    except AltinnError as exc:
        return fail(
            name, f"listing subscriptions: {exc}", "check the client's scopes (altinn:events.subscribe)"
        )
    items = [s for s in listing.get("subscriptions") or [] if isinstance(s, dict)]
    if resources:
        items = [s for s in items if s.get("resourceFilter") in resources]
    problems = [
        f"no subscription for {resource}"
        for resource in resources
        if not any(s.get("resourceFilter") == resource for s in items)
    ]
    for sub in items:
        problems += _subscription_problems(sub, settings)
    if problems:
        return fail(
            name,
            "\n".join(problems),
            "create the subscription (altinn-bridge subscription create --endpoint "
            "https://<host>/api/v1/events/<one of BRIDGE_AUTH_TOKENS> --resource <urn>); a bridge that is "
            "reachable validates it at once; for a rotated token, add it to BRIDGE_AUTH_TOKENS or "
            "re-subscribe",
        )
    if not items:
        return warn(
            name,
            "no subscription, and no resource configured to look for (BRIDGE_RECONCILE_RESOURCE, "
            "BRIDGE_FILTER_RESOURCES)",
            "set BRIDGE_FILTER_RESOURCES to the resource you subscribe to, then run doctor again",
        )
    tokens = (
        "each pushing to a token in BRIDGE_AUTH_TOKENS"
        if settings.auth.mode is AuthMode.TOKEN
        else "endpoint tokens not compared (BRIDGE_AUTH=none)"
    )
    return ok(name, f"{len(items)} subscription(s), validated, {tokens}")


def _subscription_problems(sub: dict[str, Any], settings: Settings) -> list[str]:
    """Why Altinn's pushes for ``sub`` would not reach Kafka: not validated, or a token the bridge refuses."""
    types = sub.get("typeFilter") or "every type"
    what = f"subscription {sub.get('id')} ({types} of {sub.get('resourceFilter')})"
    problems = []
    if sub.get("validated") is not True:
        problems.append(f"{what} is not validated: Altinn pushes nothing to it")
    if settings.auth.mode is not AuthMode.TOKEN:
        return problems
    endpoint = str(sub.get("endPoint") or "")
    match = _PATH_TOKEN.search(endpoint)
    accepted = {fingerprint(t) for t in settings.auth.tokens}
    if match is None:
        problems.append(f"{what}: endpoint {redact_text(endpoint)} carries no token; the bridge refuses it")
    elif fingerprint(match.group(1)) not in accepted:
        problems.append(
            f"{what}: endpoint token sha256:{fingerprint(match.group(1))} is not one of BRIDGE_AUTH_TOKENS "
            f"(fingerprints {', '.join(sorted(accepted))}): every push would be refused"
        )
    return problems


async def check_pull(api: EventsApi, settings: Settings, resources: list[str]) -> Row:
    """One page of the pull API for each configured resource, with the configured types."""
    name = "altinn.pull"
    if not resources:
        return skipped(name, "no resource configured (BRIDGE_RECONCILE_RESOURCE, BRIDGE_FILTER_RESOURCES)")
    pulled = []
    for resource in resources:
        try:
            page = await api.pull(resource, "0", 1, types=settings.filters.types)
        except AltinnError as exc:
            return fail(name, f"pulling {resource}: {exc}", "the client needs altinn:events.subscribe")
        pulled.append(f"{resource}: {len(page.events)} event(s) in the first page")
    return ok(name, "; ".join(pulled))

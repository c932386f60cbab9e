"""Altinn tokens: a Maskinporten token exchanged at Altinn, cached until shortly before it expires.

Every Events API call needs an Altinn token. Getting one costs two round trips
(Maskinporten, then Altinn's exchange), so :class:`TokenProvider` keeps it until
``refresh_margin_s`` before it expires, lets only one coroutine fetch at a time,
and fetches anew when Altinn rejects the cached one (:meth:`TokenProvider.refresh`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, Protocol

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from bridge.altinn.errors import TokenError, quote_body
from bridge.altinn.maskinporten import AccessToken, fetch_text, load_private_key, request_token
from bridge.altinn.settings import MaskinportenSettings

EXCHANGE_PATH: Final = "/authentication/api/v1/exchange/maskinporten"
#: Refresh this long before expiry, so a token never expires between our check and Altinn's.
REFRESH_MARGIN_S: Final = 60.0


class TokenSource(Protocol):
    """What the Events API client needs: a token, and a new one when a token was rejected."""

    async def token(self) -> str:
        """A token believed valid."""
        ...

    async def refresh(self, rejected: str) -> str:
        """A token other than ``rejected``, which Altinn refused."""
        ...


async def exchange(session: aiohttp.ClientSession, platform_url: str, maskinporten: AccessToken) -> str:
    """The Altinn token for a Maskinporten token; :class:`TokenError` if Altinn refuses."""
    url = platform_url + EXCHANGE_PATH
    headers = {"Authorization": f"Bearer {maskinporten.value}"}
    status, text = await fetch_text(session, "GET", url, "Altinn's token exchange", headers=headers)
    if status != 200:  # noqa: PLR2004 - the exchange answers 200 or an error
        hint = (
            " Altinn did not accept the Maskinporten token: is the client registered for Altinn "
            "with the scopes asked for?"
            if status in (401, 403)
            else ""
        )
        detail = quote_body(text, [maskinporten.value])
        raise TokenError(
            f"Altinn's token exchange answered HTTP {status}{': ' + detail if detail else ''}.{hint}"
        )
    # A bare string, which some versions of the exchange send JSON-quoted.
    token = text.strip().strip('"').strip()
    if not token or any(c.isspace() for c in token):
        raise TokenError(f"Altinn's token exchange ({url}) answered 200 without a token")
    return token


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of ``token`` if it is a JWT, else ``None``. Not verified: only for caching."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None


class TokenProvider:
    """Altinn tokens for one Maskinporten client, cached; see the module docstring.

    ``clock`` (Unix seconds) is injectable so tests move time instead of waiting.
    ``issued`` counts tokens fetched, for tests and diagnostics.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: MaskinportenSettings,
        platform_url: str,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin_s: float = REFRESH_MARGIN_S,
        key: RSAPrivateKey | None = None,
    ) -> None:
        self._session = session
        self._settings = settings
        self._platform_url = platform_url
        self._clock = clock
        self._margin_s = refresh_margin_s
        # Loaded up front: a bad key file is a configuration error, found before any request.
        self._key = key if key is not None else load_private_key(settings.private_key_file)
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.issued = 0

    def __repr__(self) -> str:
        return f"TokenProvider(client_id={self._settings.client_id!r}, cached={self._token is not None})"

    async def token(self) -> str:
        """The cached token, or a new one when there is none or it is about to expire."""
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        async with self._lock:
            # Whoever held the lock before us may have fetched one already.
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            return await self._fetch()

    async def refresh(self, rejected: str) -> str:
        """A new token, as Altinn rejected ``rejected`` (401); one another caller got already will do."""
        async with self._lock:
            if self._token is not None and self._token != rejected and self._clock() < self._refresh_at:
                return self._token
            return await self._fetch()

    async def _fetch(self) -> str:
        self._token = None
        asked_at = self._clock()
        maskinporten = await request_token(self._session, self._settings, self._key, now=asked_at)
        token = await exchange(self._session, self._platform_url, maskinporten)
        expires_at = asked_at + maskinporten.expires_in_s
        altinn_exp = jwt_expiry(token)
        if altinn_exp is not None:
            expires_at = min(expires_at, altinn_exp)
        lifetime = expires_at - asked_at
        if lifetime <= 0:
            raise TokenError(
                "the Altinn token from the exchange has already expired (check this machine's clock)"
            )
        # A token living less than twice the margin would never be reused: keep it for half its life.
        self._refresh_at = expires_at - min(self._margin_s, lifetime / 2)
        self._token = token
        self.issued += 1
        return token

"""Maskinporten's JWT-bearer grant: a signed assertion in, an access token out.

The client signs a short-lived assertion (RS256, its registered key id in the
``kid`` header) and posts it to the token endpoint. PyJWT with ``cryptography``
does the signing and key loading, so there is no hand-rolled JOSE or RSA code here.
Neither the key nor the assertion ever leaves this module except in that POST.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from bridge.altinn.errors import TokenError, quote_body
from bridge.altinn.settings import MaskinportenSettings
from bridge.envconfig import ConfigError

GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Lifetime of an assertion. Maskinporten refuses more than 120 s; less leaves room for clock skew.
ASSERTION_LIFETIME_S: Final = 100


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and how long it lives from when it was asked for. Never in ``repr``."""

    value: str = field(repr=False)
    expires_in_s: float


def load_private_key(path: str) -> RSAPrivateKey:
    """The RSA private key in the PEM file at ``path``; :class:`ConfigError` naming the variable if not.

    The message says what is wrong with the file, never what is in it.
    """
    name = "MASKINPORTEN_PRIVATE_KEY_FILE"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{name}={path!r}: cannot read it ({exc.strerror})"]) from None
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError([f"{name}={path!r}: the key is encrypted; give an unencrypted PEM key"]) from None
    except ValueError:
        raise ConfigError([f"{name}={path!r}: not a PEM private key"]) from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError([f"{name}={path!r}: not an RSA key (Maskinporten's assertion is RS256)"])
    return key


def assertion(settings: MaskinportenSettings, key: RSAPrivateKey, *, now: float) -> str:
    """The signed JWT-bearer assertion for ``settings``'s client, issued at ``now`` (Unix seconds)."""
    issued = int(now)
    claims = {
        "iss": settings.client_id,
        "aud": settings.audience,
        "scope": " ".join(settings.scopes),
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_S,
        # Maskinporten refuses a replayed assertion: every one carries a fresh id.
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": settings.key_id})


async def request_token(
    session: aiohttp.ClientSession,
    settings: MaskinportenSettings,
    key: RSAPrivateKey,
    *,
    now: float | None = None,
) -> AccessToken:
    """An access token from Maskinporten; :class:`TokenError` with Maskinporten's reason if refused."""
    signed = assertion(settings, key, now=time.time() if now is None else now)
    form = {"grant_type": GRANT_TYPE, "assertion": signed}
    status, text = await fetch_text(
        session, "POST", settings.token_url, "Maskinporten", data=form, headers={"Accept": "application/json"}
    )
    body = _json_object(text)
    if status != 200:  # noqa: PLR2004 - the token endpoint answers 200 or an error
        reason = ""
        if body is not None and isinstance(body.get("error"), str):
            reason = f" {body['error']}"
            if isinstance(body.get("error_description"), str):
                reason += f": {body['error_description']}"
        elif text.strip():
            reason = f" {quote_body(text, [signed])}"
        raise TokenError(
            f"Maskinporten refused the token request (HTTP {status}){reason}. "
            f"Client {settings.client_id!r}, key id {settings.key_id!r}, audience {settings.audience!r}, "
            f"scopes {' '.join(settings.scopes)!r}."
        )
    token = None if body is None else body.get("access_token")
    expires_in = None if body is None else body.get("expires_in")
    if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
        raise TokenError(
            f"Maskinporten's answer (HTTP {status}) carries no access_token and expires_in; "
            f"is MASKINPORTEN_TOKEN_URL ({settings.token_url}) Maskinporten's token endpoint?"
        )
    return AccessToken(token, float(expires_in))


def _json_object(text: str) -> dict[str, object] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


async def fetch_text(
    session: aiohttp.ClientSession, method: str, url: str, who: str, **request: Any
) -> tuple[int, str]:
    """Status and body of one token request; :class:`TokenError` naming ``who`` if it cannot be sent."""
    try:
        async with session.request(method, url, **request) as resp:
            return resp.status, await resp.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TokenError(f"cannot reach {who} at {url}: {type(exc).__name__} {exc}") from None

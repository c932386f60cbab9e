"""Settings of the Altinn tooling, built once from an explicit mapping.

``AltinnSettings.from_env(os.environ)`` in the CLI, a plain dict in tests, like
:class:`bridge.config.Settings`. The names are not ``BRIDGE_*``: they configure
the Altinn client (subscription and reconcile commands), and the server reads
them only with ``BRIDGE_RECONCILE=on`` (:class:`bridge.config.ReconcileSettings`).
Invalid configuration raises :class:`bridge.config.ConfigError` listing every bad
variable. Pure: no framework
imports, and no secret is read here (the private key is loaded where it signs).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from bridge.config import ConfigError, Variable


class AltinnEnvironment(enum.StrEnum):
    """The Altinn environment the tooling talks to."""

    TT02 = "tt02"
    PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class _Endpoints:
    token_url: str
    audience: str
    platform_url: str


_ENDPOINTS: Final[dict[AltinnEnvironment, _Endpoints]] = {
    AltinnEnvironment.TT02: _Endpoints(
        "https://test.maskinporten.no/token",
        "https://test.maskinporten.no/",
        "https://platform.tt02.altinn.no",
    ),
    AltinnEnvironment.PRODUCTION: _Endpoints(
        "https://maskinporten.no/token", "https://maskinporten.no/", "https://platform.altinn.no"
    ),
}

DEFAULT_SCOPES: Final = "altinn:events.subscribe"

#: Every variable the Altinn tooling reads, in the order of the README table.
VARIABLES: Final[dict[str, Variable]] = {
    "ALTINN_ENVIRONMENT": Variable(
        "tt02",
        "`tt02` or `production`: picks Maskinporten's token endpoint and audience and Altinn's "
        "platform URL. TT02 by default, so a forgotten variable never touches production.",
    ),
    "MASKINPORTEN_CLIENT_ID": Variable(
        None, "Your Maskinporten client's id (the assertion's `iss`). Required."
    ),
    "MASKINPORTEN_KEY_ID": Variable(
        None, "The `kid` under which the client's public key is registered in Maskinporten. Required."
    ),
    "MASKINPORTEN_PRIVATE_KEY_FILE": Variable(
        None, "PEM file of the client's RSA private key (unencrypted), which signs the assertion. Required."
    ),
    "MASKINPORTEN_SCOPES": Variable(
        DEFAULT_SCOPES,
        "Scopes to ask for, space-separated. Service owners add `altinn:serviceowner`.",
    ),
    "MASKINPORTEN_TOKEN_URL": Variable(
        "", "Override of Maskinporten's token endpoint (tests and local fakes). Empty: the environment's."
    ),
    "MASKINPORTEN_AUDIENCE": Variable(
        "",
        "Override of the assertion's `aud`. Empty: the environment's, or the origin of "
        "`MASKINPORTEN_TOKEN_URL` with a trailing `/` when that is set.",
    ),
    "ALTINN_PLATFORM_URL": Variable(
        "", "Override of Altinn's platform base URL (tests and local fakes). Empty: the environment's."
    ),
}

_CREDENTIALS: Final = ("MASKINPORTEN_CLIENT_ID", "MASKINPORTEN_KEY_ID", "MASKINPORTEN_PRIVATE_KEY_FILE")
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True, slots=True)
class MaskinportenSettings:
    """Who the tooling is towards Maskinporten. The key file's path only; its content is read to sign."""

    client_id: str
    key_id: str
    private_key_file: str
    #: Asked for in the ``scope`` claim, joined by spaces.
    scopes: tuple[str, ...]
    token_url: str
    audience: str


@dataclass(frozen=True, slots=True)
class AltinnSettings:
    """Where Altinn is, and the Maskinporten client to get tokens with.

    ``maskinporten`` is ``None`` only when built with ``credentials=False`` and the
    client is not configured (``--dry-run``, which obtains no token).
    """

    environment: AltinnEnvironment
    platform_url: str
    maskinporten: MaskinportenSettings | None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, credentials: bool = True) -> AltinnSettings:
        """Settings from environment-like ``env``; raise :class:`ConfigError` listing all problems.

        With ``credentials=False`` a missing Maskinporten client is not a problem
        (values that are set are still checked).
        """
        r = _Reader(env)
        raw_environment = r.get("ALTINN_ENVIRONMENT").lower()
        try:
            environment = AltinnEnvironment(raw_environment)
        except ValueError:
            r.problems.append(f"ALTINN_ENVIRONMENT={raw_environment!r}: expected tt02 or production")
            environment = AltinnEnvironment.TT02
        defaults = _ENDPOINTS[environment]
        platform_url = r.url("ALTINN_PLATFORM_URL", defaults.platform_url).rstrip("/")
        token_url = r.url("MASKINPORTEN_TOKEN_URL", defaults.token_url)
        # Maskinporten's audience is its issuer: the token endpoint's origin, with a slash.
        audience_default = defaults.audience if token_url == defaults.token_url else _origin(token_url) + "/"
        audience = r.url("MASKINPORTEN_AUDIENCE", audience_default)
        scopes = tuple(r.get("MASKINPORTEN_SCOPES").split())
        if not scopes:
            r.problems.append("MASKINPORTEN_SCOPES is empty: name at least one, e.g. altinn:events.subscribe")
        client = r.credentials(required=credentials)
        if r.problems:
            raise ConfigError(r.problems)
        maskinporten = None
        if client is not None:
            client_id, key_id, key_file = client
            maskinporten = MaskinportenSettings(
                client_id=client_id,
                key_id=key_id,
                private_key_file=key_file,
                scopes=scopes,
                token_url=token_url,
                audience=audience,
            )
        return cls(environment=environment, platform_url=platform_url, maskinporten=maskinporten)


class _Reader:
    """Reads variables, collecting problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def get(self, name: str) -> str:
        raw = self.env.get(name)
        return (raw if raw is not None else VARIABLES[name].default or "").strip()

    def url(self, name: str, default: str) -> str:
        raw = self.get(name)
        if not raw:
            return default
        try:
            return _url(raw)
        except ValueError as exc:
            self.problems.append(f"{name}={raw!r}: {exc}")
            return default

    def credentials(self, *, required: bool) -> tuple[str, str, str] | None:
        """Client id, key id and key file; ``None`` when none is set and none is ``required``."""
        client_id, key_id, key_file = (self.get(name) for name in _CREDENTIALS)
        missing = [
            name for name, value in zip(_CREDENTIALS, (client_id, key_id, key_file), strict=True) if not value
        ]
        if required or len(missing) < len(_CREDENTIALS):
            self.problems += [f"{name} is required: {VARIABLES[name].help}" for name in missing]
        if key_file and (not Path(key_file).is_file() or not os.access(key_file, os.R_OK)):
            self.problems.append(f"MASKINPORTEN_PRIVATE_KEY_FILE={key_file!r}: no readable file there")
        return None if missing else (client_id, key_id, key_file)


def _url(raw: str) -> str:
    """An absolute URL: https, or http to this machine only (local fakes); tokens travel in it."""
    parts = urlsplit(raw)
    if parts.scheme == "https" and parts.hostname:
        return raw
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return raw
    raise ValueError("expected an absolute https:// URL (http:// only to localhost/127.0.0.1)")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"

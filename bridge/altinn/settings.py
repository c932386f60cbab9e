"""Settings of the Altinn tooling, built once from an explicit mapping.

``AltinnSettings.from_env(environ)`` in the CLI, a plain dict in tests, like
:class:`bridge.config.Settings`. The names are not ``BRIDGE_*``: they configure
the Altinn client (subscription and reconcile commands), and the server reads
them only with ``BRIDGE_RECONCILE=on`` (:class:`bridge.config.ReconcileSettings`).
Invalid configuration raises :class:`bridge.envconfig.ConfigError` listing every
bad variable. Pure: no framework imports, and no secret is read here (the private key
is loaded where it signs).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from bridge.envconfig import ConfigError, Declarations, Reader, Variable, one_of, optional, optional_file


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

DECLARED: Final = Declarations()
env = DECLARED.setting


def _url(raw: str) -> str | None:
    """An absolute URL: https, or http to this machine only (local fakes); tokens travel in it."""
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme == "https" and parts.hostname:
        return raw
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return raw
    raise ValueError("expected an absolute https:// URL (http:// only to localhost/127.0.0.1)")


def _scopes(raw: str) -> tuple[str, ...]:
    scopes = tuple(raw.split())
    if not scopes:
        raise ValueError("name at least one, e.g. altinn:events.subscribe")
    return scopes


_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True, slots=True)
class _Variables:
    """The variables as set; :meth:`AltinnSettings.from_env` derives the endpoints from them."""

    environment: AltinnEnvironment = env(
        "ALTINN_ENVIRONMENT",
        one_of(AltinnEnvironment),
        "tt02",
        "`tt02` or `production`: picks Maskinporten's token endpoint and audience and Altinn's "
        "platform URL. TT02 by default, so a forgotten variable never touches production.",
    )
    client_id: str | None = env(
        "MASKINPORTEN_CLIENT_ID",
        optional,
        "",
        "Your Maskinporten client's id (the assertion's `iss`). Required.",
    )
    key_id: str | None = env(
        "MASKINPORTEN_KEY_ID",
        optional,
        "",
        "The `kid` under which the client's public key is registered in Maskinporten. Required.",
    )
    private_key_file: str | None = env(
        "MASKINPORTEN_PRIVATE_KEY_FILE",
        optional_file,
        "",
        "PEM file of the client's RSA private key (unencrypted), which signs the assertion. Required.",
    )
    scopes: tuple[str, ...] = env(
        "MASKINPORTEN_SCOPES",
        _scopes,
        DEFAULT_SCOPES,
        "Scopes to ask for, space-separated. Service owners add `altinn:serviceowner`.",
    )
    token_url: str | None = env(
        "MASKINPORTEN_TOKEN_URL",
        _url,
        "",
        "Override of Maskinporten's token endpoint (tests and local fakes). Empty: the environment's.",
    )
    audience: str | None = env(
        "MASKINPORTEN_AUDIENCE",
        _url,
        "",
        "Override of the assertion's `aud`. Empty: the environment's, or the origin of "
        "`MASKINPORTEN_TOKEN_URL` with a trailing `/` when that is set.",
    )
    platform_url: str | None = env(
        "ALTINN_PLATFORM_URL",
        _url,
        "",
        "Override of Altinn's platform base URL (tests and local fakes). Empty: the environment's.",
    )


#: Every variable the Altinn tooling reads, in the order of docs/configuration.md.
VARIABLES: Final[dict[str, Variable]] = DECLARED.user_variables()
_CREDENTIALS: Final = ("MASKINPORTEN_CLIENT_ID", "MASKINPORTEN_KEY_ID", "MASKINPORTEN_PRIVATE_KEY_FILE")


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
        reader = Reader(env, DECLARED.variables)
        given = reader.load(_Variables)
        defaults = _ENDPOINTS[given.environment]
        platform_url = (given.platform_url or defaults.platform_url).rstrip("/")
        token_url = given.token_url or defaults.token_url
        # Maskinporten's audience is its issuer: the token endpoint's origin, with a slash.
        audience_default = defaults.audience if token_url == defaults.token_url else _origin(token_url) + "/"
        audience = given.audience or audience_default
        client = (given.client_id, given.key_id, given.private_key_file)
        missing = [name for name, value in zip(_CREDENTIALS, client, strict=True) if not value]
        if credentials or len(missing) < len(_CREDENTIALS):
            reader.problems += [
                f"{name} is required: {VARIABLES[name].help}" for name in missing if name not in reader.failed
            ]
        if reader.problems:
            raise ConfigError(reader.problems)
        maskinporten = None
        if given.client_id and given.key_id and given.private_key_file:
            maskinporten = MaskinportenSettings(
                client_id=given.client_id,
                key_id=given.key_id,
                private_key_file=given.private_key_file,
                scopes=given.scopes,
                token_url=token_url,
                audience=audience,
            )
        return cls(environment=given.environment, platform_url=platform_url, maskinporten=maskinporten)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"

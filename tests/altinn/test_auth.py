"""Maskinporten grant, token exchange and the cached token provider, against the fakes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bridge.altinn.errors import TokenError
from bridge.altinn.maskinporten import AccessToken, load_private_key
from bridge.altinn.settings import AltinnSettings, MaskinportenSettings
from bridge.altinn.tokens import TokenProvider, exchange
from bridge.config import ConfigError
from devtools.broker import free_port
from devtools.fake_altinn import FakeAltinn, Urls, generate_key, pem
from tests.altinn.conftest import secrets_of
from tests.support.altinn import CLIENT_ID, KEY_ID, Clock


async def test_the_assertion_carries_what_maskinporten_checks(
    provider: TokenProvider, fake: FakeAltinn, urls: Urls
) -> None:
    await provider.token()
    await provider.refresh(await provider.token())
    first, second = fake.assertions
    assert first["header"] == {"alg": "RS256", "kid": KEY_ID, "typ": "JWT"}
    claims = first["claims"]
    assert claims["iss"] == CLIENT_ID
    assert claims["aud"] == urls.audience
    assert claims["scope"] == "altinn:events.subscribe"
    assert 0 < claims["exp"] - claims["iat"] <= 120
    assert claims["jti"] != second["claims"]["jti"]


@pytest.mark.parametrize("quoted", [True, False], ids=["json-quoted", "bare"])
async def test_exchange_answer_quoted_or_bare_gives_the_token(
    provider: TokenProvider, fake: FakeAltinn, quoted: bool
) -> None:
    fake.exchange_quoted = quoted
    token = await provider.token()
    assert token == fake.credentials_seen[-1]  # the Altinn token the fake issued last
    assert '"' not in token
    assert token.count(".") == 2


async def test_token_is_cached_even_under_concurrency(provider: TokenProvider, fake: FakeAltinn) -> None:
    tokens = await asyncio.gather(*(provider.token() for _ in range(10)))
    tokens.append(await provider.token())
    assert len(set(tokens)) == 1
    assert fake.maskinporten_tokens_issued == 1
    assert fake.altinn_tokens_issued == 1
    assert provider.issued == 1


async def test_refreshed_a_minute_before_maskinportens_expires_in(
    provider: TokenProvider, fake: FakeAltinn, clock: Clock
) -> None:
    fake.maskinporten_expires_in_s = 120  # the Altinn token lives longer (1800 s)
    first = await provider.token()
    clock.advance(59)
    assert await provider.token() == first
    clock.advance(2)  # 61 s: within the 60 s margin
    second = await provider.token()
    assert second != first
    assert fake.maskinporten_tokens_issued == 2


async def test_refreshed_before_the_altinn_tokens_own_exp_when_earlier(
    provider: TokenProvider, fake: FakeAltinn, clock: Clock
) -> None:
    fake.maskinporten_expires_in_s = 120
    fake.altinn_token_lifetime_s = 100  # exp in the Altinn JWT comes first
    first = await provider.token()
    clock.advance(45)
    assert await provider.token() == first
    clock.advance(10)  # 55 s: past half of a 100 s life (shorter than twice the margin)
    assert await provider.token() != first
    assert fake.altinn_tokens_issued == 2


async def test_refresh_replaces_a_rejected_token_once(provider: TokenProvider, fake: FakeAltinn) -> None:
    rejected = await provider.token()
    fresh, again = await asyncio.gather(provider.refresh(rejected), provider.refresh(rejected))
    assert fresh == again != rejected
    assert fake.altinn_tokens_issued == 2
    assert await provider.token() == fresh


def _with(settings: MaskinportenSettings, **changes: object) -> MaskinportenSettings:
    values = {f: getattr(settings, f) for f in settings.__dataclass_fields__}
    return MaskinportenSettings(**{**values, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"key_id": "other-kid"}, "invalid_grant: Invalid assertion. Unknown alg/kid 'other-kid'."),
        ({"client_id": "someone-else"}, "invalid_grant: Invalid assertion. Unknown client 'someone-else'."),
        ({"audience": "https://maskinporten.no/"}, "invalid_grant: Invalid assertion. aud must be"),
        ({"scopes": ("altinn:serviceowner",)}, "invalid_scope: Scope(s) not allowed: altinn:serviceowner"),
    ],
)
async def test_maskinportens_error_description_is_shown_without_secrets(  # noqa: PLR0917 - fixtures + params
    http: aiohttp.ClientSession,
    settings: AltinnSettings,
    maskinporten: MaskinportenSettings,
    fake: FakeAltinn,
    key_file: Path,
    changes: dict[str, object],
    expected: str,
) -> None:
    provider = TokenProvider(http, _with(maskinporten, **changes), settings.platform_url)
    with pytest.raises(TokenError) as raised:
        await provider.token()
    message = str(raised.value)
    assert "Maskinporten refused the token request (HTTP 400)" in message
    assert expected in message
    assert fake.maskinporten_tokens_issued == 0
    assert fake.credentials_seen  # the assertion reached the fake…
    assert not [s for s in secrets_of(fake, key_file) if s in message]  # …and is not in the message


async def test_a_key_maskinporten_does_not_know_is_refused(
    http: aiohttp.ClientSession, settings: AltinnSettings, maskinporten: MaskinportenSettings
) -> None:
    provider = TokenProvider(http, maskinporten, settings.platform_url, key=generate_key())
    with pytest.raises(TokenError, match=r"invalid_grant: .*Invalid signature"):
        await provider.token()


async def test_exchange_refusal_names_the_status_not_the_token(
    http: aiohttp.ClientSession, settings: AltinnSettings
) -> None:
    bogus = AccessToken("not-a-maskinporten-token-abcdef", 120)
    with pytest.raises(TokenError) as raised:
        await exchange(http, settings.platform_url, bogus)
    assert "Altinn's token exchange answered HTTP 401" in str(raised.value)
    assert bogus.value not in str(raised.value)


async def test_unreachable_maskinporten(
    http: aiohttp.ClientSession, settings: AltinnSettings, maskinporten: MaskinportenSettings
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/token"
    provider = TokenProvider(http, _with(maskinporten, token_url=closed), settings.platform_url)
    with pytest.raises(TokenError, match=f"cannot reach Maskinporten at {closed}"):
        await provider.token()


async def test_provider_repr_shows_no_token(provider: TokenProvider) -> None:
    token = await provider.token()
    assert token not in repr(provider)
    assert "cached=True" in repr(provider)


def test_key_file_problems_name_the_variable_not_the_content(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as raised:
        load_private_key(str(garbage))
    assert "MASKINPORTEN_PRIVATE_KEY_FILE" in str(raised.value)
    assert "not a PEM private key" in str(raised.value)
    assert "c2VjcmV0LWJ5dGVz" not in str(raised.value)

    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        generate_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        )
    )
    with pytest.raises(ConfigError, match="encrypted"):
        load_private_key(str(encrypted))

    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ConfigError, match="not an RSA key"):
        load_private_key(str(ec_key))

    good = tmp_path / "good.pem"
    good.write_bytes(pem(generate_key()))
    assert load_private_key(str(good)).key_size == 2048

"""Fakes of Maskinporten and Altinn (devtools/fake_altinn.py) on 127.0.0.1, and a client key for them.

The key is generated here; the fakes run on ephemeral ports in a thread of their
own, so the synchronous CLI (``main([...], env=...)``) and async tests can both
call them. ``clock`` drives the fakes and the token provider alike, so tests move
time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.altinn.settings import AltinnSettings, MaskinportenSettings
from bridge.altinn.tokens import TokenProvider
from devtools.fake_altinn import Client, FakeAltinn, Urls, generate_key, pem, running
from tests.conftest import VALID

CLIENT_ID = "0f1e2d3c-test-client"
KEY_ID = "test-kid-1"
RESOURCE = "urn:altinn:resource:altinn-correspondence-test-resource-1"
#: The bridge's token in the endpoint URL: a secret the output must show only as a fingerprint.
BRIDGE_TOKEN = "bridge-path-token-0123456789abcdefXYZ"
ENDPOINT = f"https://bridge.example.org/api/v1/events/{BRIDGE_TOKEN}"


@dataclass
class Clock:
    """Real time plus an offset tests move forward."""

    offset_s: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


@pytest.fixture(scope="session")
def client_key() -> rsa.RSAPrivateKey:
    return generate_key()


@pytest.fixture
def key_file(tmp_path: Path, client_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "maskinporten.pem"
    path.write_bytes(pem(client_key))
    return path


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(client_key: rsa.RSAPrivateKey, clock: Clock) -> FakeAltinn:
    return FakeAltinn(client=Client(CLIENT_ID, KEY_ID, client_key.public_key()), clock=clock)


@pytest.fixture
def urls(fake: FakeAltinn) -> Iterator[Urls]:
    with running(fake) as started:
        yield started


@pytest.fixture
def env(urls: Urls, key_file: Path) -> dict[str, str]:
    """The environment of a user with a Maskinporten client, pointed at the fakes."""
    return {
        "MASKINPORTEN_CLIENT_ID": CLIENT_ID,
        "MASKINPORTEN_KEY_ID": KEY_ID,
        "MASKINPORTEN_PRIVATE_KEY_FILE": str(key_file),
        **urls.env(),
    }


@pytest.fixture
def settings(env: dict[str, str]) -> AltinnSettings:
    return AltinnSettings.from_env(env)


@pytest.fixture
def maskinporten(settings: AltinnSettings) -> MaskinportenSettings:
    assert settings.maskinporten is not None
    return settings.maskinporten


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


@pytest.fixture
def provider(
    session: aiohttp.ClientSession, settings: AltinnSettings, maskinporten: MaskinportenSettings, clock: Clock
) -> TokenProvider:
    return TokenProvider(session, maskinporten, settings.platform_url, clock=clock)


def correspondence_events() -> list[dict[str, object]]:
    """The 18 Correspondence fixtures of one resource, in file order."""
    events = [orjson.loads(p.read_bytes()) for p in VALID[:18]]
    assert all(e["resource"] == RESOURCE for e in events)
    return events


def secrets_of(fake: FakeAltinn, key_file: Path) -> list[str]:
    """Everything that must never be printed: tokens, assertions, the key, the bridge's path token."""
    key_lines = [line for line in key_file.read_text().splitlines() if line and not line.startswith("-----")]
    return [*fake.credentials_seen, *key_lines, BRIDGE_TOKEN]

"""The fake Maskinporten + Altinn (devtools/fake_altinn.py) as fixtures, and a client key for them.

For tests/altinn and the reconciler's integration tests: a client key made here, the
fakes on 127.0.0.1 in a thread of their own (so the synchronous CLI and async tests can
both call them), and the environment of a user whose Maskinporten client points at
them. ``clock`` drives the fakes and the token cache alike, so tests move time instead
of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.fake_altinn import Client, FakeAltinn, Urls, generate_key, pem, running

CLIENT_ID = "0f1e2d3c-test-client"
KEY_ID = "test-kid-1"
RESOURCE = "urn:altinn:resource:altinn-correspondence-test-resource-1"


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
def altinn_env(urls: Urls, key_file: Path) -> dict[str, str]:
    """The environment of a user with a Maskinporten client, pointed at the fakes."""
    return {
        "MASKINPORTEN_CLIENT_ID": CLIENT_ID,
        "MASKINPORTEN_KEY_ID": KEY_ID,
        "MASKINPORTEN_PRIVATE_KEY_FILE": str(key_file),
        **urls.env(),
    }

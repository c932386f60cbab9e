"""The Altinn client's settings and token provider, pointed at the fake Maskinporten + Altinn.

The fakes, the client key and ``clock`` are fixtures of tests/support/altinn.py; ``http``
(the client session) is tests/support/http.py's.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson
import pytest

from bridge.altinn.settings import AltinnSettings, MaskinportenSettings
from bridge.altinn.tokens import TokenProvider
from devtools.fake_altinn import FakeAltinn
from tests.support.altinn import RESOURCE, Clock
from tests.support.events import VALID

#: The bridge's token in the endpoint URL: a secret the output must show only as a fingerprint.
BRIDGE_TOKEN = "bridge-path-token-0123456789abcdefXYZ"
ENDPOINT = f"https://bridge.example.org/api/v1/events/{BRIDGE_TOKEN}"


@pytest.fixture
def env(altinn_env: dict[str, str]) -> dict[str, str]:
    """The environment of a user with a Maskinporten client, pointed at the fakes."""
    return altinn_env


@pytest.fixture
def settings(env: dict[str, str]) -> AltinnSettings:
    return AltinnSettings.from_env(env)


@pytest.fixture
def maskinporten(settings: AltinnSettings) -> MaskinportenSettings:
    assert settings.maskinporten is not None
    return settings.maskinporten


@pytest.fixture
def provider(
    http: aiohttp.ClientSession, settings: AltinnSettings, maskinporten: MaskinportenSettings, clock: Clock
) -> TokenProvider:
    return TokenProvider(http, maskinporten, settings.platform_url, clock=clock)


def correspondence_events() -> list[dict[str, object]]:
    """The 18 Correspondence fixtures of one resource, in file order."""
    events = [orjson.loads(p.read_bytes()) for p in VALID[:18]]
    assert all(e["resource"] == RESOURCE for e in events)
    return events


def secrets_of(fake: FakeAltinn, key_file: Path) -> list[str]:
    """Everything that must never be printed: tokens, assertions, the key, the bridge's path token."""
    key_lines = [line for line in key_file.read_text().splitlines() if line and not line.startswith("-----")]
    return [*fake.credentials_seen, *key_lines, BRIDGE_TOKEN]

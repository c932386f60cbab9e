"""ALTINN_*/MASKINPORTEN_* settings: defaults per environment, every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.altinn.settings import VARIABLES, AltinnEnvironment, AltinnSettings
from bridge.config import ConfigError


def _client(key_file: Path) -> dict[str, str]:
    return {
        "MASKINPORTEN_CLIENT_ID": "client",
        "MASKINPORTEN_KEY_ID": "kid",
        "MASKINPORTEN_PRIVATE_KEY_FILE": str(key_file),
    }


def test_defaults_are_tt02(key_file: Path) -> None:
    settings = AltinnSettings.from_env(_client(key_file))
    assert settings.environment is AltinnEnvironment.TT02
    assert settings.platform_url == "https://platform.tt02.altinn.no"
    mp = settings.maskinporten
    assert mp is not None
    assert mp.token_url == "https://test.maskinporten.no/token"
    assert mp.audience == "https://test.maskinporten.no/"
    assert mp.scopes == ("altinn:events.subscribe",)
    assert (mp.client_id, mp.key_id, mp.private_key_file) == ("client", "kid", str(key_file))


def test_production(key_file: Path) -> None:
    env = {**_client(key_file), "ALTINN_ENVIRONMENT": "Production", "MASKINPORTEN_SCOPES": "a  b"}
    settings = AltinnSettings.from_env(env)
    assert settings.environment is AltinnEnvironment.PRODUCTION
    assert settings.platform_url == "https://platform.altinn.no"
    assert settings.maskinporten is not None
    assert settings.maskinporten.token_url == "https://maskinporten.no/token"
    assert settings.maskinporten.audience == "https://maskinporten.no/"
    assert settings.maskinporten.scopes == ("a", "b")


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    env = {
        "ALTINN_ENVIRONMENT": "prod",
        "ALTINN_PLATFORM_URL": "http://altinn.example.org",
        "MASKINPORTEN_TOKEN_URL": "/token",
        "MASKINPORTEN_PRIVATE_KEY_FILE": str(tmp_path / "missing.pem"),
        "MASKINPORTEN_SCOPES": " ",
    }
    with pytest.raises(ConfigError) as raised:
        AltinnSettings.from_env(env)
    text = str(raised.value)
    for name in (
        "ALTINN_ENVIRONMENT",
        "ALTINN_PLATFORM_URL",
        "MASKINPORTEN_TOKEN_URL",
        "MASKINPORTEN_SCOPES",
        "MASKINPORTEN_CLIENT_ID is required",
        "MASKINPORTEN_KEY_ID is required",
        "MASKINPORTEN_PRIVATE_KEY_FILE='",
    ):
        assert name in text, name
    assert len(raised.value.problems) == 7


def test_without_credentials_only_when_none_is_set(key_file: Path) -> None:
    settings = AltinnSettings.from_env({}, credentials=False)
    assert settings.maskinporten is None
    with pytest.raises(ConfigError, match="MASKINPORTEN_KEY_ID is required"):
        AltinnSettings.from_env(
            {"MASKINPORTEN_CLIENT_ID": "c", "MASKINPORTEN_PRIVATE_KEY_FILE": str(key_file)}, credentials=False
        )


def test_overrides_http_only_to_this_machine_and_audience_follows_the_token_url(key_file: Path) -> None:
    env = {
        **_client(key_file),
        "MASKINPORTEN_TOKEN_URL": "http://127.0.0.1:9/token",
        "ALTINN_PLATFORM_URL": "http://localhost:8/",
    }
    settings = AltinnSettings.from_env(env)
    assert settings.platform_url == "http://localhost:8"
    assert settings.maskinporten is not None
    assert settings.maskinporten.audience == "http://127.0.0.1:9/"
    explicit = AltinnSettings.from_env({**env, "MASKINPORTEN_AUDIENCE": "https://mp.example/"})
    assert explicit.maskinporten is not None
    assert explicit.maskinporten.audience == "https://mp.example/"
    with pytest.raises(ConfigError, match="ALTINN_PLATFORM_URL"):
        AltinnSettings.from_env({**env, "ALTINN_PLATFORM_URL": "http://10.0.0.1"})


def test_bridge_settings_do_not_call_these_unknown() -> None:
    from bridge.config import unknown_variables  # noqa: PLC0415

    assert unknown_variables(dict.fromkeys(VARIABLES, "x")) == []

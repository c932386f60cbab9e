"""Each command asks only for the settings it uses.

``serve`` (and ``check-config``/``doctor``, which check what ``serve`` reads) need everything,
a token among it in token mode (docs/configuration.md, ``BRIDGE_AUTH``). The one-shot commands
(``topics``, ``reconcile``, ``redrive``) serve no HTTP: an environment without tokens, or with a
TLS file mounted only into the server's pod, must not stop them. Exit code 2 is a configuration
error (docs/operations.md).
"""

from __future__ import annotations

import pytest

from bridge.cli import main
from bridge.config import AuthMode, ConfigError, Settings

#: A server's environment without its token: what a one-shot job sharing the ConfigMap has.
NO_TOKEN = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
RESOURCE = "urn:altinn:resource:my-correspondence-resource"


def test_serve_still_exits_2_without_a_token(capsys: pytest.CaptureFixture[str]):
    assert main(["serve"], env=NO_TOKEN) == 2
    err = capsys.readouterr().err
    assert "BRIDGE_AUTH_TOKENS is empty" in err
    assert main([], env=NO_TOKEN) == 2  # serve is the default command


def test_check_config_checks_what_serve_reads(capsys: pytest.CaptureFixture[str]):
    assert main(["check-config"], env=NO_TOKEN) == 2
    assert "BRIDGE_AUTH_TOKENS" in capsys.readouterr().err


def test_topics_needs_no_token_nor_server_files(capsys: pytest.CaptureFixture[str]):
    env = {
        **NO_TOKEN,
        "BRIDGE_TLS_CERT_FILE": "/run/secrets/only-in-the-server-pod/tls.crt",
        "BRIDGE_TLS_KEY_FILE": "/run/secrets/only-in-the-server-pod/tls.key",
        "BRIDGE_HTTP_PORT": "not-a-port",
    }
    assert main(["topics"], env=env) == 0
    out = capsys.readouterr()
    assert "altinn.correspondence.unknown" in out.out.splitlines()
    assert out.err == ""


def test_topics_with_continuous_reconciling_needs_no_maskinporten_client(capsys: pytest.CaptureFixture[str]):
    env = {**NO_TOKEN, "BRIDGE_RECONCILE": "on", "BRIDGE_RECONCILE_RESOURCE": RESOURCE}
    assert main(["topics"], env=env) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "altinn.correspondence.reconcile-cursor"
    # serve does need it, and says so.
    assert main(["serve"], env={**env, "BRIDGE_AUTH": "none"}) == 2
    assert "needed by BRIDGE_RECONCILE=on" in capsys.readouterr().err


def test_reconcile_asks_for_the_altinn_client_not_for_a_token(capsys: pytest.CaptureFixture[str]):
    code = main(["reconcile", "--resource", RESOURCE], env={**NO_TOKEN, "BRIDGE_DEDUPE": "kafka"})
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("altinn-bridge reconcile:")
    assert "MASKINPORTEN_CLIENT_ID" in err
    assert "BRIDGE_AUTH_TOKENS" not in err


def test_redrive_gets_past_the_settings_without_a_token(capsys: pytest.CaptureFixture[str]):
    # Refused for its options (before connecting), not for the server's settings.
    assert main(["redrive", "--from", "t", "--since", "1h", "--until", "2h"], env=NO_TOKEN) == 2
    err = capsys.readouterr().err
    assert err.startswith("altinn-bridge redrive: --since must be before --until")
    assert "BRIDGE_AUTH_TOKENS" not in err


def test_one_shot_commands_still_refuse_what_they_use(capsys: pytest.CaptureFixture[str]):
    assert main(["topics"], env={"BRIDGE_TOPIC_PREFIX": "bad prefix"}) == 2
    err = capsys.readouterr().err
    assert "KAFKA_BOOTSTRAP_SERVERS is required" in err
    assert "BRIDGE_TOPIC_PREFIX='bad prefix'" in err
    assert "2 problem(s)" in err


def test_settings_for_one_shot_commands_leave_the_server_sections_at_their_defaults():
    env = {**NO_TOKEN, "BRIDGE_HTTP_PORT": "9999", "BRIDGE_AUTH_TOKENS": "short"}
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert any(p.startswith("BRIDGE_AUTH_TOKENS=<redacted>") for p in raised.value.problems)
    one_shot = Settings.from_env(env, serving=False)
    assert one_shot.http.port == 8080  # not read
    assert one_shot.auth.tokens == ()
    assert one_shot.auth.mode is AuthMode.TOKEN  # fails closed should anything ever serve with it
    assert one_shot.kafka.bootstrap_servers == ("127.0.0.1:1",)

"""Kafka client options from the settings: what the producer and the dedupe consumer get."""

from __future__ import annotations

import asyncio
import os
import ssl

import pytest

from bridge.config import KafkaSecurity, SaslMechanism, SecurityProtocol
from bridge.kafka_security import FileTokenProvider, client_options
from tests.support.settings import make_settings


def test_plaintext_by_default():
    assert client_options(make_settings().kafka.security) == {"security_protocol": "PLAINTEXT"}


def test_ssl_context_checks_hostnames_unless_told_not_to():
    on = client_options(KafkaSecurity(protocol=SecurityProtocol.SSL))
    off = client_options(KafkaSecurity(protocol=SecurityProtocol.SSL, ssl_check_hostname=False))
    assert on["security_protocol"] == "SSL"
    assert isinstance(on["ssl_context"], ssl.SSLContext)
    assert on["ssl_context"].check_hostname is True
    assert on["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert off["ssl_context"].check_hostname is False
    assert "sasl_mechanism" not in on


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_with_username_and_password(mechanism: str):
    settings = make_settings(
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM=mechanism,
        KAFKA_SASL_USERNAME="bridge",
        KAFKA_SASL_PASSWORD="pw-1234",  # noqa: S106 - a test value
    )
    options = client_options(settings.kafka.security)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == mechanism
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("bridge", "pw-1234")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "pw-1234" not in repr(settings)


def test_oauthbearer_token_file_is_reread_when_it_changes(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    settings = make_settings(
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM="oauthbearer",
        KAFKA_SASL_OAUTHBEARER_TOKEN_FILE=str(token_file),
    )
    assert settings.kafka.security.sasl_mechanism is SaslMechanism.OAUTHBEARER
    provider = client_options(settings.kafka.security)["sasl_oauth_token_provider"]
    assert isinstance(provider, FileTokenProvider)

    assert asyncio.run(provider.token()) == "first-token"
    # Kubernetes swaps the projected file; a new mtime (and size) means a new token.
    token_file.write_text("second-token-longer\n")
    stat = token_file.stat()
    os.utime(token_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert asyncio.run(provider.token()) == "second-token-longer"


def test_empty_token_file_is_an_error_not_an_empty_token(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("  \n")
    with pytest.raises(ValueError, match="is empty"):
        asyncio.run(FileTokenProvider(str(token_file)).token())

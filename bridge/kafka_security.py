"""TLS and SASL options for every Kafka client the bridge opens (producer, dedupe consumer).

One place turns :class:`~bridge.config.KafkaSecurity` into aiokafka keyword
arguments, so the producer and the consumers can never disagree.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from aiokafka.abc import AbstractTokenProvider
from aiokafka.helpers import create_ssl_context

from bridge.kafka_settings import KafkaSecurity, SaslMechanism


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]  # aiokafka ships no types
    """OAUTHBEARER token read from a file, re-read whenever the file changes.

    Kubernetes projects service account tokens into a file and replaces it
    before expiry; the broker gets the current token on every (re)authentication.
    """

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._token = ""

    async def token(self) -> str:
        """The token in the file now (read again only when its mtime or size changed)."""
        return await asyncio.to_thread(self._read)

    def _read(self) -> str:
        stat = self._path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            token = self._path.read_text(encoding="utf-8").strip()
            if not token:
                raise ValueError(f"OAUTHBEARER token file {self._path} is empty")
            self._token, self._stamp = token, stamp
        return self._token


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """Client TLS context: the configured CA (or the system's), optional client certificate."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=security.ssl_ca_file,
        certfile=security.ssl_cert_file,
        keyfile=security.ssl_key_file,
        password=security.ssl_key_password,
    )
    context.check_hostname = security.ssl_check_hostname
    return context


def client_options(security: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``/``AIOKafkaConsumer``."""
    options: dict[str, Any] = {"security_protocol": str(security.protocol)}
    if security.uses_ssl:
        options["ssl_context"] = ssl_context(security)
    if security.uses_sasl:
        options["sasl_mechanism"] = str(security.sasl_mechanism)
        token_file = security.sasl_oauthbearer_token_file
        if security.sasl_mechanism is SaslMechanism.OAUTHBEARER and token_file is not None:
            options["sasl_oauth_token_provider"] = FileTokenProvider(token_file)
        else:
            options["sasl_plain_username"] = security.sasl_username
            options["sasl_plain_password"] = security.sasl_password
    return options

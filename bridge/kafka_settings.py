"""Kafka client settings: the brokers, the producer's tuning, TLS and SASL.

Declared like the rest of the settings (:mod:`bridge.envconfig`); a section of
:class:`bridge.config.Settings`, and on their own what the Kafka adapters
(publisher, followers, leadership) need. Pure: no framework imports.
"""

from __future__ import annotations

import enum
import importlib
from dataclasses import dataclass
from typing import Final

from bridge.envconfig import (
    Declarations,
    boolean,
    csv,
    int_range,
    nonempty,
    one_of,
    optional,
    optional_file,
    seconds,
    section,
)

DECLARED: Final = Declarations()
env = DECLARED.setting

_MAX_PORT = 65535
_MIB = 1024 * 1024


class Compression(enum.StrEnum):
    """Kafka record batch compression codecs."""

    NONE = "none"
    GZIP = "gzip"
    SNAPPY = "snappy"
    LZ4 = "lz4"
    ZSTD = "zstd"


#: The module aiokafka 0.14 compresses each codec with (``aiokafka/codec.py``: all but gzip through
#: ``cramjam``, from the ``aiokafka[lz4,snappy,zstd]`` runtime dependency). Without it the producer
#: fails at every connect attempt, which looks like a Kafka outage; checked with the settings instead.
CODEC_MODULES: Final[dict[Compression, str]] = {
    Compression.SNAPPY: "cramjam",
    Compression.LZ4: "cramjam",
    Compression.ZSTD: "cramjam",
}


def missing_codec(compression: Compression) -> str | None:
    """Why ``compression`` cannot be used in this installation, or None if it can."""
    module = CODEC_MODULES.get(compression)
    if module is None:
        return None
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return (
            f"KAFKA_COMPRESSION={compression} needs the Python package {module!r} (aiokafka's {compression} "
            f"codec), which cannot be imported here ({exc}): install requirements/runtime.lock, as the "
            "image does, or choose another codec"
        )
    return None


class SecurityProtocol(enum.StrEnum):
    """Kafka listener security protocols."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(enum.StrEnum):
    """SASL mechanisms the bridge can authenticate to Kafka with."""

    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    OAUTHBEARER = "OAUTHBEARER"


def _bootstrap(raw: str) -> tuple[str, ...]:
    servers = csv(raw)
    if not servers:
        raise ValueError("must name at least one host:port")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= _MAX_PORT:
            raise ValueError(f"{server!r} is not host:port")
    return servers


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """TLS and SASL towards Kafka. Secrets are excluded from ``repr``."""

    protocol: SecurityProtocol = env(
        "KAFKA_SECURITY_PROTOCOL",
        one_of(SecurityProtocol, upper=True),
        "PLAINTEXT",
        "`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`, as the cluster's listener expects.",
    )
    ssl_ca_file: str | None = env(
        "KAFKA_SSL_CA_FILE",
        optional_file,
        "",
        "PEM file of the CA(s) that signed the brokers' certificates. Empty: the system's CAs.",
    )
    ssl_cert_file: str | None = env(
        "KAFKA_SSL_CERT_FILE",
        optional_file,
        "",
        "PEM client certificate (chain), for clusters that require mutual TLS; with `KAFKA_SSL_KEY_FILE`.",
    )
    ssl_key_file: str | None = env(
        "KAFKA_SSL_KEY_FILE", optional_file, "", "PEM private key of `KAFKA_SSL_CERT_FILE`."
    )
    ssl_key_password: str | None = env(
        "KAFKA_SSL_KEY_PASSWORD", optional, "", "Password of an encrypted `KAFKA_SSL_KEY_FILE`.", secret=True
    )
    ssl_check_hostname: bool = env(
        "KAFKA_SSL_CHECK_HOSTNAME",
        boolean,
        "true",
        "Check that a broker's certificate names the host connected to. Keep `true`.",
    )
    sasl_mechanism: SaslMechanism = env(
        "KAFKA_SASL_MECHANISM",
        one_of(SaslMechanism, upper=True),
        "PLAIN",
        "With `SASL_*`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.",
    )
    sasl_username: str | None = env(
        "KAFKA_SASL_USERNAME", optional, "", "User name for `PLAIN` and `SCRAM-*`."
    )
    sasl_password: str | None = env(
        "KAFKA_SASL_PASSWORD", optional, "", "Password for `PLAIN` and `SCRAM-*`.", secret=True
    )
    sasl_oauthbearer_token_file: str | None = env(
        "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE",
        optional_file,
        "",
        "For `OAUTHBEARER`: file holding the access token, re-read whenever it changes (as Kubernetes "
        "projects service account tokens).",
    )

    @property
    def uses_ssl(self) -> bool:
        """True for ``SSL`` and ``SASL_SSL``."""
        return self.protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        """True for ``SASL_PLAINTEXT`` and ``SASL_SSL``."""
        return self.protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)

    def problems(self, _: frozenset[str]) -> list[str]:
        """Rules across variables."""
        found = []
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            found.append("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE must be set together")
        if self.uses_sasl and self.sasl_mechanism is SaslMechanism.OAUTHBEARER:
            if self.sasl_oauthbearer_token_file is None:
                found.append("KAFKA_SASL_MECHANISM=OAUTHBEARER needs KAFKA_SASL_OAUTHBEARER_TOKEN_FILE")
        elif self.uses_sasl and (self.sasl_username is None or self.sasl_password is None):
            found.append(
                f"KAFKA_SASL_MECHANISM={self.sasl_mechanism} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
        return found


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """How the producer talks to Kafka. ``acks`` is always ``all``."""

    bootstrap_servers: tuple[str, ...] = env(
        "KAFKA_BOOTSTRAP_SERVERS", _bootstrap, None, "Comma-separated `host:port` list of Kafka brokers."
    )
    client_id: str = env(
        "KAFKA_CLIENT_ID", nonempty, "altinn-kafka-bridge", "Client id the producer reports to Kafka."
    )
    enable_idempotence: bool = env(
        "KAFKA_ENABLE_IDEMPOTENCE",
        boolean,
        "true",
        "Idempotent producer (no duplicates from producer retries). Keep `true` for real "
        "Kafka; the local test broker (Tansu) cannot do it, so `make run`/`make test` set `false`.",
    )
    compression: Compression = env(
        "KAFKA_COMPRESSION",
        one_of(Compression),
        "none",
        "Record batch compression: `none`, `gzip`, `snappy`, `lz4` or `zstd`. Every codec is in the "
        "runtime dependencies (the image has them all); where one is missing, `check-config` and `serve` "
        "exit 2 naming it.",
    )
    linger_ms: int = env(
        "KAFKA_LINGER_MS",
        int_range(0, 60_000),
        "2",
        "How long the producer lets a batch fill before sending it, in ms. 2 ms made fewer, larger "
        "requests: half-load p99 fell from 41-62 to 16.5-27 ms and batch ingest rose 1.5x, for ~2 ms more "
        "per event (docs/performance.md). 0 = send at once.",
    )
    max_batch_bytes: int = env(
        "KAFKA_MAX_BATCH_BYTES",
        int_range(1024, 64 * _MIB),
        "262144",
        "Largest record batch per partition, in bytes. When a partition's batch is full, further "
        "sends wait for it to be sent; aiokafka's 16 KiB default made that the main cost under load "
        "(see docs/performance.md). Keep it under the broker's `message.max.bytes` (1 MiB).",
    )
    publish_timeout_s: float = env(
        "BRIDGE_PUBLISH_TIMEOUT_S",
        seconds(0.1, 40.0),
        "10",
        "Upper bound, in seconds, for one event to be acknowledged by Kafka (`acks=all`). "
        "After it the request is answered 503 so Altinn retries. Must stay well under "
        "Altinn's 45 s request timeout.",
    )
    security: KafkaSecurity = section(KafkaSecurity)

    def problems(self, failed: frozenset[str]) -> list[str]:
        """The codec of ``KAFKA_COMPRESSION`` must be importable."""
        if "KAFKA_COMPRESSION" in failed:
            return []
        missing = missing_codec(self.compression)
        return [] if missing is None else [missing]

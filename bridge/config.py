"""Settings: one frozen, typed object built once from an explicit mapping.

``Settings.from_env(os.environ)`` in production, a plain dict in tests. Every
variable is declared once in :data:`VARIABLES` (name, default, meaning); the
README's configuration table is checked against it by the test suite. Invalid
configuration raises :class:`ConfigError`, whose message lists every bad
variable at once. Pure: no framework imports.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from bridge.auth import MIN_TOKEN_LENGTH, TOKEN_ALPHABET, parse_networks

if TYPE_CHECKING:
    from bridge.altinn.settings import AltinnSettings

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: its default (``None`` = required) and meaning."""

    default: str | None
    help: str
    secret: bool = False


#: Every setting the bridge reads. Order is the order of the README table.
VARIABLES: Final[dict[str, Variable]] = {
    "KAFKA_BOOTSTRAP_SERVERS": Variable(None, "Comma-separated `host:port` list of Kafka brokers. Required."),
    "KAFKA_CLIENT_ID": Variable("altinn-kafka-bridge", "Client id the producer reports to Kafka."),
    "KAFKA_ENABLE_IDEMPOTENCE": Variable(
        "true",
        "Idempotent producer (no duplicates from producer retries). Keep `true` for real "
        "Kafka; the local test broker (Tansu) cannot do it, so `make run`/`make test` set `false`.",
    ),
    "KAFKA_COMPRESSION": Variable(
        "none", "Record batch compression: `none`, `gzip`, `snappy`, `lz4` or `zstd`."
    ),
    "KAFKA_LINGER_MS": Variable(
        "2",
        "How long the producer lets a batch fill before sending it, in ms. 2 ms made fewer, larger "
        "requests: half-load p99 fell from 41-62 to 16.5-27 ms and batch ingest rose 1.5x, for ~2 ms more "
        "per event (docs/performance.md). 0 = send at once.",
    ),
    "KAFKA_MAX_BATCH_BYTES": Variable(
        "262144",
        "Largest record batch per partition, in bytes. When a partition's batch is full, further "
        "sends wait for it to be sent; aiokafka's 16 KiB default made that the main cost under load "
        "(see docs/performance.md). Keep it under the broker's `message.max.bytes` (1 MiB).",
    ),
    "KAFKA_SECURITY_PROTOCOL": Variable(
        "PLAINTEXT", "`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`, as the cluster's listener expects."
    ),
    "KAFKA_SSL_CA_FILE": Variable(
        "", "PEM file of the CA(s) that signed the brokers' certificates. Empty: the system's CAs."
    ),
    "KAFKA_SSL_CERT_FILE": Variable(
        "", "PEM client certificate (chain), for clusters that require mutual TLS; with `KAFKA_SSL_KEY_FILE`."
    ),
    "KAFKA_SSL_KEY_FILE": Variable("", "PEM private key of `KAFKA_SSL_CERT_FILE`."),
    "KAFKA_SSL_KEY_PASSWORD": Variable("", "Password of an encrypted `KAFKA_SSL_KEY_FILE`.", secret=True),
    "KAFKA_SSL_CHECK_HOSTNAME": Variable(
        "true", "Check that a broker's certificate names the host connected to. Keep `true`."
    ),
    "KAFKA_SASL_MECHANISM": Variable(
        "PLAIN",
        "With `SASL_*`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.",
    ),
    "KAFKA_SASL_USERNAME": Variable("", "User name for `PLAIN` and `SCRAM-*`."),
    "KAFKA_SASL_PASSWORD": Variable("", "Password for `PLAIN` and `SCRAM-*`.", secret=True),
    "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE": Variable(
        "",
        "For `OAUTHBEARER`: file holding the access token, re-read whenever it changes (as Kubernetes "
        "projects service account tokens).",
    ),
    "BRIDGE_PUBLISH_TIMEOUT_S": Variable(
        "10",
        "Upper bound, in seconds, for one event to be acknowledged by Kafka (`acks=all`). "
        "After it the request is answered 503 so Altinn retries. Must stay well under "
        "Altinn's 45 s request timeout.",
    ),
    "BRIDGE_HTTP_HOST": Variable(
        "0.0.0.0",  # noqa: S104 - a server pod must listen beyond loopback; sidecars set 127.0.0.1
        "Address the HTTP server binds. Use `127.0.0.1` for a sidecar.",
    ),
    "BRIDGE_HTTP_PORT": Variable("8080", "TCP port of the HTTP server."),
    "BRIDGE_OPS_PORT": Variable(
        "0",
        "TCP port of a second, plain-HTTP listener serving only `/healthz`, `/readyz` and `/metrics`, "
        "on a thread of its own: probes and scrapes are answered promptly even while the event port "
        "is overloaded, and a sidecar bound to 127.0.0.1 can still be scraped. `0` = off (they are "
        "served on the event port only; they always are there too).",
    ),
    "BRIDGE_OPS_HOST": Variable(
        "0.0.0.0",  # noqa: S104 - probes and Prometheus reach the pod from outside
        "Address the `BRIDGE_OPS_PORT` listener binds.",
    ),
    "BRIDGE_WORKERS": Variable(
        "1",
        "Worker processes sharing the port (SO_REUSEPORT), each with its own producer; metrics "
        "cover all of them. More than one needs a writable temp directory (metrics files). "
        "`altinn-bridge serve --workers N` overrides it.",
    ),
    "BRIDGE_AUTH": Variable(
        "token",
        "`token`: every event request must carry one of `BRIDGE_AUTH_TOKENS`, in the path "
        "(`/api/v1/events/<token>`, the only way Altinn can) or as `Authorization: Bearer <token>`. "
        "`none`: no authentication, for local runs or behind a proxy that authenticates. With "
        "`token` and no token the bridge refuses to start.",
    ),
    "BRIDGE_AUTH_TOKENS": Variable(
        "",
        "Accepted tokens, comma-separated; several at once for rotation without downtime. Each at "
        "least 24 characters of `A-Z a-z 0-9 - . _ ~`, e.g. from "
        "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`. Never logged: log lines "
        "carry an 8-hex-digit fingerprint.",
        secret=True,
    ),
    "BRIDGE_ALLOWED_NETWORKS": Variable(
        "",
        "Source addresses allowed to post events: CIDRs, comma-separated, and the presets "
        "`altinn-tt02` (20.100.24.41/32) and `altinn-production` (20.100.46.139/32). Others get "
        "403. Empty = any. Health and metrics endpoints are not restricted.",
    ),
    "BRIDGE_TRUSTED_PROXIES": Variable(
        "",
        "CIDRs of proxies (ingress controller, load balancer) whose `Forwarded` or "
        "`X-Forwarded-For` header names the client for `BRIDGE_ALLOWED_NETWORKS`; from any other "
        "peer those headers are ignored.",
    ),
    "BRIDGE_TLS_CERT_FILE": Variable(
        "", "PEM certificate (chain) to serve HTTPS directly, for pods without an ingress. Empty: HTTP."
    ),
    "BRIDGE_TLS_KEY_FILE": Variable("", "PEM private key of `BRIDGE_TLS_CERT_FILE`."),
    "BRIDGE_MAX_BODY_BYTES": Variable(
        "65536", "Largest request body accepted, in bytes; larger is answered 413."
    ),
    "BRIDGE_MAX_BATCH_BYTES": Variable(
        "4194304",
        "Largest batch body (`application/cloudevents-batch+json`) accepted, in bytes; larger "
        "is answered 413 without reading it.",
    ),
    "BRIDGE_MAX_BATCH_EVENTS": Variable(
        "500", "Most events accepted in one batch; a longer batch is answered 413."
    ),
    "BRIDGE_KEEPALIVE_TIMEOUT_S": Variable(
        "75",
        "An idle keep-alive connection, or one that never finishes its request line and headers "
        "(aiohttp has no separate header timeout), is closed after this many seconds. Keep it above "
        "the upstream keep-alive of your ingress or load balancer (nginx: 60 s).",
    ),
    "BRIDGE_READ_TIMEOUT_S": Variable(
        "10",
        "How long a client may take to send its request body, in seconds; slower is answered "
        "408 and the connection closed.",
    ),
    "BRIDGE_MAX_IN_FLIGHT": Variable(
        "512",
        "Most publishes waiting for Kafka at once. Beyond it requests are answered 503 with "
        "`Retry-After` at once instead of queueing, so memory stays bounded under overload.",
    ),
    "BRIDGE_DEDUPE": Variable(
        "kafka",
        "Duplicate suppression on (`source`, `id`). `kafka`: remembered in the state topic "
        "(`BRIDGE_DEDUPE_TOPIC`), survives restarts and is shared by replicas. `memory`: this "
        "process only. `off`: every delivery is published.",
    ),
    "BRIDGE_DEDUPE_TOPIC": Variable(
        "altinn.correspondence.dedupe",
        "Topic holding the keys of published events (`cleanup.policy=compact,delete`, "
        "`retention.ms` above the window). Unset: `<BRIDGE_TOPIC_PREFIX>.dedupe`.",
    ),
    "BRIDGE_DEDUPE_WINDOW_S": Variable(
        "172800",
        "How long a published event's (`source`, `id`) is remembered, in seconds. Altinn "
        "retries for about 35 h; the default 48 h leaves a margin.",
    ),
    "BRIDGE_DEDUPE_MAX_ENTRIES": Variable(
        "500000",
        "Most keys remembered; the oldest is evicted (and counted) beyond it. About 250 bytes "
        "of memory each (`python -m devtools.dedupe_memory`), so ~120 MiB when the default is full.",
    ),
    "BRIDGE_RECORD_MODE": Variable(
        "structured",
        "How records are written. `structured`: the event JSON as value (CloudEvents Kafka "
        "structured mode, byte for byte as received). `binary`: the event's `data` as value and "
        "every attribute as a `ce_` header.",
    ),
    "BRIDGE_TOPIC_PREFIX": Variable(
        "altinn.correspondence",
        "Default topic of a known type is `<prefix>.<type name>`, e.g. "
        "`altinn.correspondence.correspondencepublished`.",
    ),
    "BRIDGE_TOPIC_ROUTES": Variable(
        "",
        "Routing table overriding the default, comma-separated `pattern=topic`. A pattern is "
        "a full type or a glob (`*`, `?`), matched case-insensitively; exact types win over "
        "globs, globs are tried in the order given. `*=altinn.events` sends everything to one topic.",
    ),
    "BRIDGE_TOPIC_UNKNOWN": Variable(
        "altinn.correspondence.unknown",
        "Topic for event types the bridge does not know yet (never rejected, never lost). "
        "Unset: `<BRIDGE_TOPIC_PREFIX>.unknown`.",
    ),
    "BRIDGE_TOPIC_DEADLETTER": Variable(
        "altinn.correspondence.deadletter",
        "Topic for bodies that can never be valid events (see `BRIDGE_INVALID_EVENT_POLICY`). "
        "Unset: `<BRIDGE_TOPIC_PREFIX>.deadletter`.",
    ),
    "BRIDGE_INVALID_EVENT_POLICY": Variable(
        "deadletter",
        "`deadletter`: write an invalid body to the dead-letter topic and answer 200 (Altinn "
        "retries every non-2xx for ~35 h, so a 4xx only burns retries). `reject`: answer 400.",
    ),
    "BRIDGE_FILTER_SOURCES": Variable(
        "",
        "Allowed event sources, comma-separated. Presets `production`, `tt02`, `at22`, `at23`, "
        "`yt01` stand for that environment's Correspondence API; other entries are URL prefixes "
        "matched at a `/` boundary. Empty = all. `tt02` keeps Correspondence's internal dev "
        "environment (which also publishes into TT02) out.",
    ),
    "BRIDGE_FILTER_RESOURCES": Variable("", "Allowed `resource` URNs (exact), comma-separated. Empty = all."),
    "BRIDGE_FILTER_ALTERNATIVESUBJECTS": Variable(
        "",
        "Allowed `alternativesubject` values, comma-separated; an entry ending in `/` or `*` is "
        "a prefix (e.g. `/organisation/`). Events without one are filtered out when set. "
        "Empty = all.",
    ),
    "BRIDGE_FILTER_TYPES": Variable(
        "",
        "Allowed event types, comma-separated, full (`no.altinn.correspondence.x`) or short "
        "(`x`), case-insensitive. Empty = all.",
    ),
    "BRIDGE_RECONCILE": Variable(
        "off",
        "`on`: one replica at a time pulls the events of `BRIDGE_RECONCILE_RESOURCE` from Altinn's pull "
        'API and publishes those no push delivered (see "Reconciling"); needs `BRIDGE_DEDUPE=kafka` '
        "and the Maskinporten client (`MASKINPORTEN_*`, `ALTINN_*`). `off`: push only.",
    ),
    "BRIDGE_RECONCILE_RESOURCE": Variable(
        "", "The resource whose events are reconciled, `urn:altinn:resource:<id>`. Required with `on`."
    ),
    "BRIDGE_RECONCILE_INTERVAL_S": Variable(
        "60",
        "Once caught up, how long to wait before asking Altinn again, in seconds. Events become "
        "pullable 30 s after Altinn registered them, so a lost push is repaired within about "
        "30 s + this.",
    ),
    "BRIDGE_RECONCILE_PAGE_SIZE": Variable("500", "Events asked for per pull (1 to 1000)."),
    "BRIDGE_RECONCILE_CURSOR_TOPIC": Variable(
        "altinn.correspondence.reconcile-cursor",
        "Compacted topic (one partition) holding the reconcile cursor per resource; its consumer "
        "group `<KAFKA_CLIENT_ID>-reconciler` lets one replica reconcile at a time. "
        "Unset: `<BRIDGE_TOPIC_PREFIX>.reconcile-cursor`.",
    ),
    "BRIDGE_RECONCILE_SESSION_TIMEOUT_S": Variable(
        "30",
        "Kafka group session timeout of the reconciler, in seconds: a replica that stops "
        "heartbeating loses the cursor to another after this long.",
    ),
    "BRIDGE_READY_CHECK_INTERVAL_S": Variable(
        "5", "How long a broker reachability result is reused by `/readyz`, in seconds."
    ),
    "BRIDGE_READY_CHECK_TIMEOUT_S": Variable("2", "Bound on one broker reachability check, in seconds."),
    "BRIDGE_SHUTDOWN_DRAIN_S": Variable(
        "3",
        "After SIGTERM, how long the server keeps answering (503, readiness failed) so load "
        "balancers stop sending, in seconds.",
    ),
    "BRIDGE_SHUTDOWN_GRACE_S": Variable(
        "25",
        "Total shutdown budget after SIGTERM, in seconds: drain, in-flight requests, producer "
        "flush. Keep it below the pod's `terminationGracePeriodSeconds` (30 by default).",
    ),
    "BRIDGE_LOG_LEVEL": Variable("info", "`debug`, `info`, `warning` or `error`."),
}

SOURCE_PRESETS: Final[dict[str, str]] = {
    "production": "https://platform.altinn.no/correspondence/api/v1/",
    "tt02": "https://platform.tt02.altinn.no/correspondence/api/v1/",
    "at22": "https://platform.at22.altinn.cloud/correspondence/api/v1/",
    "at23": "https://platform.at23.altinn.cloud/correspondence/api/v1/",
    "yt01": "https://platform.yt01.altinn.cloud/correspondence/api/v1/",
}

_MAX_PORT = 65535
# Kafka topic names stop at 249 chars; the longest type name appended is ~45.
_MAX_PREFIX = 190
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


class ConfigError(ValueError):
    """Configuration is invalid; ``problems`` lists every bad variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration ({len(problems)} problem(s)):\n{lines}")


class InvalidEventPolicy(enum.StrEnum):
    """What to do with a body that can never be a valid event."""

    DEADLETTER = "deadletter"
    REJECT = "reject"


class Compression(enum.StrEnum):
    """Kafka record batch compression codecs."""

    NONE = "none"
    GZIP = "gzip"
    SNAPPY = "snappy"
    LZ4 = "lz4"
    ZSTD = "zstd"


class AuthMode(enum.StrEnum):
    """How event requests are authenticated."""

    TOKEN = "token"  # noqa: S105 - a mode's name, not a secret
    NONE = "none"


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


class DedupeMode(enum.StrEnum):
    """Where the keys of published events are remembered."""

    KAFKA = "kafka"
    MEMORY = "memory"
    OFF = "off"


class RecordMode(enum.StrEnum):
    """CloudEvents Kafka binding content mode of the records written."""

    STRUCTURED = "structured"
    BINARY = "binary"


class LogLevel(enum.StrEnum):
    """Log levels accepted by ``BRIDGE_LOG_LEVEL``."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """TLS and SASL towards Kafka. Secrets are excluded from ``repr``."""

    protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    ssl_ca_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True
    sasl_mechanism: SaslMechanism = SaslMechanism.PLAIN
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    sasl_oauthbearer_token_file: str | None = None

    @property
    def uses_ssl(self) -> bool:
        """True for ``SSL`` and ``SASL_SSL``."""
        return self.protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        """True for ``SASL_PLAINTEXT`` and ``SASL_SSL``."""
        return self.protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """How the producer talks to Kafka. ``acks`` is always ``all``."""

    bootstrap_servers: tuple[str, ...]
    client_id: str = "altinn-kafka-bridge"
    enable_idempotence: bool = True
    compression: Compression = Compression.NONE
    linger_ms: int = 2
    max_batch_bytes: int = 262144
    publish_timeout_s: float = 10.0
    security: KafkaSecurity = field(default_factory=KafkaSecurity)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP server."""

    host: str = "0.0.0.0"  # noqa: S104 - see VARIABLES["BRIDGE_HTTP_HOST"]
    port: int = 8080
    #: The probes-and-metrics listener (bridge.ops_server); 0 = off.
    ops_port: int = 0
    ops_host: str = "0.0.0.0"  # noqa: S104 - see VARIABLES["BRIDGE_OPS_HOST"]
    max_body_bytes: int = 65536
    max_batch_bytes: int = 4 * 1024 * 1024
    max_batch_events: int = 500
    read_timeout_s: float = 10.0
    keepalive_timeout_s: float = 75.0
    max_in_flight: int = 512
    workers: int = 1
    tls_cert_file: str | None = None
    tls_key_file: str | None = None


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Who may post events; see :mod:`bridge.auth`. Tokens are excluded from ``repr``."""

    mode: AuthMode = AuthMode.TOKEN
    tokens: tuple[str, ...] = field(default=(), repr=False)
    allowed_networks: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DedupeSettings:
    """Duplicate suppression on (source, id); see :mod:`bridge.dedupe`."""

    mode: DedupeMode = DedupeMode.KAFKA
    topic: str = "altinn.correspondence.dedupe"
    window_s: float = 48 * 3600.0
    max_entries: int = 500_000


@dataclass(frozen=True, slots=True)
class TopicRoute:
    """One routing table entry: a type or glob (lower case) and its topic."""

    pattern: str
    topic: str


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """Where events go; see :mod:`bridge.routing`."""

    prefix: str = "altinn.correspondence"
    routes: tuple[TopicRoute, ...] = ()
    unknown: str = "altinn.correspondence.unknown"
    deadletter: str = "altinn.correspondence.deadletter"


@dataclass(frozen=True, slots=True)
class FilterSettings:
    """Local filters (Altinn refuses source/alternativesubject filters). Empty = all pass."""

    sources: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    alternativesubjects: tuple[str, ...] = ()
    types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """Continuous reconciling from Altinn's pull API; see :mod:`bridge.reconciler`.

    ``altinn`` (where Altinn is, the Maskinporten client) is read only when
    reconciling is on; the one-shot command reads it itself.
    """

    enabled: bool = False
    resource: str | None = None
    #: Wait between polls once caught up.
    interval_s: float = 60.0
    page_size: int = 500
    cursor_topic: str = "altinn.correspondence.reconcile-cursor"
    #: Group session timeout; heartbeats every tenth of it.
    session_timeout_s: float = 30.0
    altinn: AltinnSettings | None = None


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Readiness checking."""

    ready_check_interval_s: float = 5.0
    ready_check_timeout_s: float = 2.0


@dataclass(frozen=True, slots=True)
class ShutdownSettings:
    """What happens after SIGTERM."""

    drain_s: float = 3.0
    grace_s: float = 25.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the bridge is configured with. Build with :meth:`from_env`."""

    kafka: KafkaSettings
    http: HttpSettings = field(default_factory=HttpSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    filters: FilterSettings = field(default_factory=FilterSettings)
    invalid_event_policy: InvalidEventPolicy = InvalidEventPolicy.DEADLETTER
    record_mode: RecordMode = RecordMode.STRUCTURED
    auth: AuthSettings = field(default_factory=AuthSettings)
    dedupe: DedupeSettings = field(default_factory=DedupeSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    log_level: LogLevel = LogLevel.INFO
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from environment-like ``env``; raise :class:`ConfigError` listing all problems."""
        r = _Reader(env)
        kafka = KafkaSettings(
            bootstrap_servers=r.get("KAFKA_BOOTSTRAP_SERVERS", _bootstrap, ()),
            client_id=r.get("KAFKA_CLIENT_ID", _nonempty, "altinn-kafka-bridge"),
            enable_idempotence=r.get("KAFKA_ENABLE_IDEMPOTENCE", _bool, True),
            compression=r.get("KAFKA_COMPRESSION", _enum(Compression), Compression.NONE),
            linger_ms=r.get("KAFKA_LINGER_MS", _int_range(0, 60_000), 2),
            max_batch_bytes=r.get("KAFKA_MAX_BATCH_BYTES", _int_range(1024, 64 * 1024 * 1024), 262144),
            publish_timeout_s=r.get("BRIDGE_PUBLISH_TIMEOUT_S", _seconds(0.1, 40.0), 10.0),
            security=_kafka_security(r),
        )
        http = HttpSettings(
            host=r.get("BRIDGE_HTTP_HOST", _nonempty, "0.0.0.0"),  # noqa: S104
            port=r.get("BRIDGE_HTTP_PORT", _int_range(1, _MAX_PORT), 8080),
            ops_port=r.get("BRIDGE_OPS_PORT", _int_range(0, _MAX_PORT), 0),
            ops_host=r.get("BRIDGE_OPS_HOST", _nonempty, "0.0.0.0"),  # noqa: S104
            max_body_bytes=r.get("BRIDGE_MAX_BODY_BYTES", _int_range(1024, 64 * 1024 * 1024), 65536),
            max_batch_bytes=r.get(
                "BRIDGE_MAX_BATCH_BYTES", _int_range(1024, 256 * 1024 * 1024), 4 * 1024 * 1024
            ),
            max_batch_events=r.get("BRIDGE_MAX_BATCH_EVENTS", _int_range(1, 100_000), 500),
            read_timeout_s=r.get("BRIDGE_READ_TIMEOUT_S", _seconds(0.1, 300.0), 10.0),
            keepalive_timeout_s=r.get("BRIDGE_KEEPALIVE_TIMEOUT_S", _seconds(1.0, 3600.0), 75.0),
            max_in_flight=r.get("BRIDGE_MAX_IN_FLIGHT", _int_range(1, 1_000_000), 512),
            workers=r.get("BRIDGE_WORKERS", _int_range(1, 64), 1),
            tls_cert_file=r.get("BRIDGE_TLS_CERT_FILE", _optional_file, None),
            tls_key_file=r.get("BRIDGE_TLS_KEY_FILE", _optional_file, None),
        )
        if http.ops_port and http.ops_port == http.port:
            r.problems.append("BRIDGE_OPS_PORT must differ from BRIDGE_HTTP_PORT (or be 0: off)")
        if (http.tls_cert_file is None) != (http.tls_key_file is None):
            r.problems.append("BRIDGE_TLS_CERT_FILE and BRIDGE_TLS_KEY_FILE must be set together")
        auth = _auth(r)
        prefix = r.get("BRIDGE_TOPIC_PREFIX", _topic_prefix, "altinn.correspondence")
        topics = TopicSettings(
            prefix=prefix,
            routes=r.get("BRIDGE_TOPIC_ROUTES", _routes, ()),
            unknown=r.get("BRIDGE_TOPIC_UNKNOWN", _topic, "", default=f"{prefix}.unknown"),
            deadletter=r.get("BRIDGE_TOPIC_DEADLETTER", _topic, "", default=f"{prefix}.deadletter"),
        )
        dedupe = DedupeSettings(
            mode=r.get("BRIDGE_DEDUPE", _enum(DedupeMode), DedupeMode.KAFKA),
            topic=r.get("BRIDGE_DEDUPE_TOPIC", _topic, "", default=f"{prefix}.dedupe"),
            window_s=r.get("BRIDGE_DEDUPE_WINDOW_S", _seconds(1.0, 90 * 86400.0), 48 * 3600.0),
            max_entries=r.get("BRIDGE_DEDUPE_MAX_ENTRIES", _int_range(1, 100_000_000), 500_000),
        )
        filters = FilterSettings(
            sources=r.get("BRIDGE_FILTER_SOURCES", _sources, ()),
            resources=r.get("BRIDGE_FILTER_RESOURCES", _csv, ()),
            alternativesubjects=r.get("BRIDGE_FILTER_ALTERNATIVESUBJECTS", _csv, ()),
            types=r.get("BRIDGE_FILTER_TYPES", _types, ()),
        )
        health = HealthSettings(
            ready_check_interval_s=r.get("BRIDGE_READY_CHECK_INTERVAL_S", _seconds(0.0, 300.0), 5.0),
            ready_check_timeout_s=r.get("BRIDGE_READY_CHECK_TIMEOUT_S", _seconds(0.1, 60.0), 2.0),
        )
        shutdown = ShutdownSettings(
            drain_s=r.get("BRIDGE_SHUTDOWN_DRAIN_S", _seconds(0.0, 300.0), 3.0),
            grace_s=r.get("BRIDGE_SHUTDOWN_GRACE_S", _seconds(1.0, 600.0), 25.0),
        )
        reconcile = _reconcile(r, prefix, dedupe.mode)
        if shutdown.drain_s >= shutdown.grace_s:
            r.problems.append(
                f"BRIDGE_SHUTDOWN_DRAIN_S ({shutdown.drain_s:g}) must be less than "
                f"BRIDGE_SHUTDOWN_GRACE_S ({shutdown.grace_s:g})"
            )
        settings = cls(
            kafka=kafka,
            http=http,
            topics=topics,
            filters=filters,
            invalid_event_policy=r.get(
                "BRIDGE_INVALID_EVENT_POLICY", _enum(InvalidEventPolicy), InvalidEventPolicy.DEADLETTER
            ),
            record_mode=r.get("BRIDGE_RECORD_MODE", _enum(RecordMode), RecordMode.STRUCTURED),
            auth=auth,
            dedupe=dedupe,
            health=health,
            shutdown=shutdown,
            log_level=r.get("BRIDGE_LOG_LEVEL", _enum(LogLevel), LogLevel.INFO),
            reconcile=reconcile,
        )
        if r.problems:
            raise ConfigError(r.problems)
        return settings

    def describe(self) -> dict[str, object]:
        """The effective configuration as plain data, for the start-up log line."""
        k, t, f = self.kafka, self.topics, self.filters
        return {
            "kafka_bootstrap_servers": list(k.bootstrap_servers),
            "kafka_client_id": k.client_id,
            "kafka_enable_idempotence": k.enable_idempotence,
            "kafka_compression": str(k.compression),
            "kafka_linger_ms": k.linger_ms,
            "kafka_max_batch_bytes": k.max_batch_bytes,
            "publish_timeout_s": k.publish_timeout_s,
            "http": f"{self.http.host}:{self.http.port}",
            "ops": f"{self.http.ops_host}:{self.http.ops_port}" if self.http.ops_port else None,
            "workers": self.http.workers,
            "https": self.http.tls_cert_file is not None,
            "auth": str(self.auth.mode),
            "auth_tokens": len(self.auth.tokens),
            "allowed_networks": list(self.auth.allowed_networks),
            "trusted_proxies": list(self.auth.trusted_proxies),
            "kafka_security_protocol": str(k.security.protocol),
            "kafka_sasl_mechanism": str(k.security.sasl_mechanism) if k.security.uses_sasl else None,
            "max_body_bytes": self.http.max_body_bytes,
            "max_batch_bytes": self.http.max_batch_bytes,
            "max_batch_events": self.http.max_batch_events,
            "read_timeout_s": self.http.read_timeout_s,
            "max_in_flight": self.http.max_in_flight,
            "record_mode": str(self.record_mode),
            "dedupe": str(self.dedupe.mode),
            "dedupe_topic": self.dedupe.topic,
            "dedupe_window_s": self.dedupe.window_s,
            "dedupe_max_entries": self.dedupe.max_entries,
            "topic_prefix": t.prefix,
            "topic_routes": {r.pattern: r.topic for r in t.routes},
            "topic_unknown": t.unknown,
            "topic_deadletter": t.deadletter,
            "invalid_event_policy": str(self.invalid_event_policy),
            "filter_sources": list(f.sources),
            "filter_resources": list(f.resources),
            "filter_alternativesubjects": list(f.alternativesubjects),
            "filter_types": list(f.types),
            "shutdown_drain_s": self.shutdown.drain_s,
            "shutdown_grace_s": self.shutdown.grace_s,
            "reconcile": self.reconcile.enabled,
            "reconcile_resource": self.reconcile.resource,
            "reconcile_interval_s": self.reconcile.interval_s,
            "reconcile_page_size": self.reconcile.page_size,
            "reconcile_cursor_topic": self.reconcile.cursor_topic,
            "altinn_platform_url": self.reconcile.altinn.platform_url if self.reconcile.altinn else None,
        }


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """``BRIDGE_*`` names in ``env`` that the bridge does not read (likely typos).

    Only reported, not fatal: Kubernetes injects ``<SERVICE>_PORT`` style
    variables for every Service, so a Service named "bridge" would add some.
    """
    return sorted(n for n in env if n.startswith("BRIDGE_") and n not in VARIABLES)


# --- sections with rules across variables ----------------------------------


def _auth(r: _Reader) -> AuthSettings:
    mode = r.get("BRIDGE_AUTH", _enum(AuthMode), AuthMode.TOKEN)
    tokens: tuple[str, ...] = r.get("BRIDGE_AUTH_TOKENS", _tokens, ())
    if mode is AuthMode.TOKEN and not tokens and "BRIDGE_AUTH_TOKENS" not in r.failed:
        r.problems.append(
            "BRIDGE_AUTH_TOKENS is empty: set at least one token (the URL to register in Altinn is "
            "https://<host>/api/v1/events/<token>), or BRIDGE_AUTH=none to accept events from anyone "
            "who can reach the bridge"
        )
    return AuthSettings(
        mode=mode,
        tokens=tokens,
        allowed_networks=r.get("BRIDGE_ALLOWED_NETWORKS", _networks, ()),
        trusted_proxies=r.get("BRIDGE_TRUSTED_PROXIES", _networks, ()),
    )


def _reconcile(r: _Reader, prefix: str, dedupe: DedupeMode) -> ReconcileSettings:
    enabled = r.get("BRIDGE_RECONCILE", _on_off, False)
    resource = r.get("BRIDGE_RECONCILE_RESOURCE", _optional_resource, None)
    settings = ReconcileSettings(
        enabled=enabled,
        resource=resource,
        interval_s=r.get("BRIDGE_RECONCILE_INTERVAL_S", _seconds(0.05, 86400.0), 60.0),
        page_size=r.get("BRIDGE_RECONCILE_PAGE_SIZE", _int_range(1, 1000), 500),
        cursor_topic=r.get("BRIDGE_RECONCILE_CURSOR_TOPIC", _topic, "", default=f"{prefix}.reconcile-cursor"),
        session_timeout_s=r.get("BRIDGE_RECONCILE_SESSION_TIMEOUT_S", _seconds(1.0, 600.0), 30.0),
    )
    if not enabled:
        return settings
    if resource is None and "BRIDGE_RECONCILE_RESOURCE" not in r.failed:
        r.problems.append("BRIDGE_RECONCILE=on needs BRIDGE_RECONCILE_RESOURCE (urn:altinn:resource:<id>)")
    if dedupe is not DedupeMode.KAFKA:
        # Without the shared window every event pushed before would be published again.
        r.problems.append(f"BRIDGE_RECONCILE=on needs BRIDGE_DEDUPE=kafka (it is {dedupe})")
    # Imported here: the Altinn settings import this module.
    from bridge.altinn.settings import AltinnSettings  # noqa: PLC0415

    try:
        altinn = AltinnSettings.from_env(r.env)
    except ConfigError as exc:
        r.problems += [f"{p} (needed by BRIDGE_RECONCILE=on)" for p in exc.problems]
        return settings
    return replace(settings, altinn=altinn)


def _kafka_security(r: _Reader) -> KafkaSecurity:
    security = KafkaSecurity(
        protocol=r.get("KAFKA_SECURITY_PROTOCOL", _enum_upper(SecurityProtocol), SecurityProtocol.PLAINTEXT),
        ssl_ca_file=r.get("KAFKA_SSL_CA_FILE", _optional_file, None),
        ssl_cert_file=r.get("KAFKA_SSL_CERT_FILE", _optional_file, None),
        ssl_key_file=r.get("KAFKA_SSL_KEY_FILE", _optional_file, None),
        ssl_key_password=r.get("KAFKA_SSL_KEY_PASSWORD", _optional, None),
        ssl_check_hostname=r.get("KAFKA_SSL_CHECK_HOSTNAME", _bool, True),
        sasl_mechanism=r.get("KAFKA_SASL_MECHANISM", _enum_upper(SaslMechanism), SaslMechanism.PLAIN),
        sasl_username=r.get("KAFKA_SASL_USERNAME", _optional, None),
        sasl_password=r.get("KAFKA_SASL_PASSWORD", _optional, None),
        sasl_oauthbearer_token_file=r.get("KAFKA_SASL_OAUTHBEARER_TOKEN_FILE", _optional_file, None),
    )
    if (security.ssl_cert_file is None) != (security.ssl_key_file is None):
        r.problems.append("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE must be set together")
    if security.uses_sasl:
        if security.sasl_mechanism is SaslMechanism.OAUTHBEARER:
            if security.sasl_oauthbearer_token_file is None:
                r.problems.append("KAFKA_SASL_MECHANISM=OAUTHBEARER needs KAFKA_SASL_OAUTHBEARER_TOKEN_FILE")
        elif security.sasl_username is None or security.sasl_password is None:
            r.problems.append(
                f"KAFKA_SASL_MECHANISM={security.sasl_mechanism} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
    return security


# --- parsing helpers -------------------------------------------------------


class _Reader:
    """Reads variables, collecting problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        #: Names whose value was rejected (their problem is reported already).
        self.failed: set[str] = set()

    def get(self, name: str, parse: Callable[[str], T], fallback: T, default: str | None = None) -> T:
        """``parse`` of the variable, its ``default`` (else the documented one) when unset.

        On a problem, ``fallback`` stands in so that every problem gets reported.
        """
        var = VARIABLES[name]
        raw = self.env.get(name)
        if raw is None:
            raw = default if default is not None else var.default
        if raw is None:
            self.problems.append(f"{name} is required: {var.help}")
            return fallback
        try:
            return parse(raw.strip())
        except ValueError as exc:
            shown = "<redacted>" if var.secret else repr(raw)
            self.problems.append(f"{name}={shown}: {exc}")
            self.failed.add(name)
            return fallback


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _optional(raw: str) -> str | None:
    return raw or None


def _optional_file(raw: str) -> str | None:
    if not raw:
        return None
    if not Path(raw).is_file() or not os.access(raw, os.R_OK):
        raise ValueError("no readable file there")
    return raw


def _tokens(raw: str) -> tuple[str, ...]:
    tokens = _csv(raw)
    for n, token in enumerate(tokens, 1):
        if len(token) < MIN_TOKEN_LENGTH or not set(token) <= TOKEN_ALPHABET:
            # The value itself is secret: say which one and why, never what it is.
            raise ValueError(
                f"token {n} of {len(tokens)} must be at least {MIN_TOKEN_LENGTH} characters of "
                "A-Z a-z 0-9 - . _ ~"
            )
    return tokens


def _networks(raw: str) -> tuple[str, ...]:
    entries = _csv(raw)
    parse_networks(entries)  # raises ValueError naming a bad entry
    return entries


def _nonempty(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _on_off(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("on", "true", "1", "yes"):
        return True
    if lowered in ("off", "false", "0", "no"):
        return False
    raise ValueError("expected on or off")


def _optional_resource(raw: str) -> str | None:
    if not raw:
        return None
    if not raw.startswith("urn:altinn:resource:") or len(raw) == len("urn:altinn:resource:"):
        raise ValueError("expected a resource URN, urn:altinn:resource:<id>")
    return raw


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("expected a number of seconds") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g} seconds")
        return value

    return parse


E = TypeVar("E", bound=enum.StrEnum)


def _enum(kind: type[E]) -> Callable[[str], E]:
    def parse(raw: str) -> E:
        try:
            return kind(raw.lower())
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise ValueError(f"expected one of: {allowed}") from None

    return parse


def _enum_upper(kind: type[E]) -> Callable[[str], E]:
    def parse(raw: str) -> E:
        try:
            return kind(raw.upper())
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise ValueError(f"expected one of: {allowed}") from None

    return parse


def _bootstrap(raw: str) -> tuple[str, ...]:
    servers = _csv(raw)
    if not servers:
        raise ValueError("must name at least one host:port")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= _MAX_PORT:
            raise ValueError(f"{server!r} is not host:port")
    return servers


def _topic(raw: str) -> str:
    if not _TOPIC_NAME.fullmatch(raw) or raw in (".", ".."):
        raise ValueError("not a legal Kafka topic name (letters, digits, '.', '_', '-'; 1-249 chars)")
    return raw


def _topic_prefix(raw: str) -> str:
    if len(raw) > _MAX_PREFIX:
        raise ValueError(f"too long for topic names built from it (max {_MAX_PREFIX} chars)")
    return _topic(raw)


def _routes(raw: str) -> tuple[TopicRoute, ...]:
    routes = []
    for entry in _csv(raw):
        pattern, sep, topic = entry.partition("=")
        if not sep or not pattern.strip():
            raise ValueError(f"entry {entry!r} is not pattern=topic")
        try:
            routes.append(TopicRoute(pattern.strip().lower(), _topic(topic.strip())))
        except ValueError as exc:
            raise ValueError(f"entry {entry!r}: topic {exc}") from None
    return tuple(routes)


def _sources(raw: str) -> tuple[str, ...]:
    sources = []
    for entry in _csv(raw):
        preset = SOURCE_PRESETS.get(entry.lower())
        if preset is not None:
            sources.append(preset)
        elif entry.startswith(("https://", "http://")):
            sources.append(entry)
        else:
            presets = ", ".join(SOURCE_PRESETS)
            raise ValueError(f"{entry!r} is neither a preset ({presets}) nor an http(s) URL")
    return tuple(sources)


def _types(raw: str) -> tuple[str, ...]:
    prefix = "no.altinn.correspondence."
    return tuple(t.lower() if "." in t else prefix + t.lower() for t in _csv(raw))

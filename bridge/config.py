"""Settings: one frozen, typed object built once from an explicit mapping.

``Settings.from_env(environ)`` at the entry point (the CLI), a plain dict in tests.
Each variable is declared once, on the field it fills (:mod:`bridge.envconfig`):
name, parser, default, help and secret flag. The loader, ``describe()``, the
list of known variables and ``docs/configuration.md`` all derive from those
declarations. Invalid configuration raises :class:`ConfigError` listing every
bad variable at once. Pure: no framework imports.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final, TypeVar

from bridge.altinn.settings import AltinnSettings
from bridge.envconfig import (
    ConfigError,
    Declarations,
    Reader,
    Variable,
    csv,
    declared,
    describe,
    int_range,
    on_off,
    one_of,
    seconds,
    section,
)
from bridge.kafka_settings import Compression, KafkaSecurity, KafkaSettings, SaslMechanism, SecurityProtocol
from bridge.server_settings import (
    AuthMode,
    AuthSettings,
    HealthSettings,
    HttpSettings,
    ProcessRole,
    ShutdownSettings,
)

__all__ = [
    "VARIABLES",
    "AuthMode",
    "AuthSettings",
    "Compression",
    "ConfigError",
    "HealthSettings",
    "HttpSettings",
    "KafkaSecurity",
    "KafkaSettings",
    "SaslMechanism",
    "SecurityProtocol",
    "Settings",
    "ShutdownSettings",
    "Variable",
    "unknown_variables",
]

DECLARED: Final = Declarations()
env = DECLARED.setting
T = TypeVar("T")

SOURCE_PRESETS: Final[dict[str, str]] = {
    "production": "https://platform.altinn.no/correspondence/api/v1/",
    "tt02": "https://platform.tt02.altinn.no/correspondence/api/v1/",
    "at22": "https://platform.at22.altinn.cloud/correspondence/api/v1/",
    "at23": "https://platform.at23.altinn.cloud/correspondence/api/v1/",
    "yt01": "https://platform.yt01.altinn.cloud/correspondence/api/v1/",
}
_MAX_PORT = 65535
_MIB = 1024 * 1024
# Kafka topic names stop at 249 chars; the longest type name appended is ~45.
_MAX_PREFIX = 190
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


class InvalidEventPolicy(enum.StrEnum):
    """What to do with a body that can never be a valid event."""

    DEADLETTER = "deadletter"
    REJECT = "reject"


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
class TopicRoute:
    """One routing table entry: a type or glob (lower case) and its topic."""

    pattern: str
    topic: str

    def __str__(self) -> str:
        return f"{self.pattern}={self.topic}"


# --- parsers of this bridge's own kinds of value ------------------------------


def _resource(raw: str) -> str | None:
    if not raw:
        return None
    if not raw.startswith("urn:altinn:resource:") or len(raw) == len("urn:altinn:resource:"):
        raise ValueError("expected a resource URN, urn:altinn:resource:<id>")
    return raw


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
    for entry in csv(raw):
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
    for entry in csv(raw):
        preset = SOURCE_PRESETS.get(entry.lower())
        if preset is not None:
            sources.append(preset)
        elif entry.startswith(("https://", "http://")):
            sources.append(entry)
        else:
            raise ValueError(
                f"{entry!r} is neither a preset ({', '.join(SOURCE_PRESETS)}) nor an http(s) URL"
            )
    return tuple(sources)


def _types(raw: str) -> tuple[str, ...]:
    prefix = "no.altinn.correspondence."
    return tuple(t.lower() if "." in t else prefix + t.lower() for t in csv(raw))


# --- the settings, each variable declared on its field -----------------------


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """Where events go; see :mod:`bridge.routing`."""

    prefix: str = env(
        "BRIDGE_TOPIC_PREFIX",
        _topic_prefix,
        "altinn.correspondence",
        "Default topic of a known type is `<prefix>.<type name>`, e.g. "
        "`altinn.correspondence.correspondencepublished`.",
    )
    routes: tuple[TopicRoute, ...] = env(
        "BRIDGE_TOPIC_ROUTES",
        _routes,
        "",
        "Routing table overriding the default, comma-separated `pattern=topic`. A pattern is "
        "a full type or a glob (`*`, `?`), matched case-insensitively; exact types win over "
        "globs, globs are tried in the order given. `*=altinn.events` sends everything to one topic.",
    )
    unknown: str = env(
        "BRIDGE_TOPIC_UNKNOWN",
        _topic,
        "{BRIDGE_TOPIC_PREFIX}.unknown",
        "Topic for event types the bridge does not know yet (never rejected, never lost).",
    )
    deadletter: str = env(
        "BRIDGE_TOPIC_DEADLETTER",
        _topic,
        "{BRIDGE_TOPIC_PREFIX}.deadletter",
        "Topic for bodies that can never be valid events (see `BRIDGE_INVALID_EVENT_POLICY`).",
    )
    record_ce_headers: bool = env(
        "BRIDGE_RECORD_CE_HEADERS",
        on_off,
        "off",
        "Structured mode only: `on` adds `ce_specversion`, `ce_id`, `ce_source`, `ce_type` and "
        "`ce_time` headers beside `content-type`, for filtering on headers without reading the value. "
        "Keep `off` unless a consumer needs that: the Python CloudEvents SDK's `from_kafka_event` takes "
        "any `ce_` header for binary mode and then loses `resource`, `resourceinstance` and `subject` "
        "(docs/consumers.md).",
    )


@dataclass(frozen=True, slots=True)
class DedupeSettings:
    """Duplicate suppression on (source, id); see :mod:`bridge.dedupe`."""

    mode: DedupeMode = env(
        "BRIDGE_DEDUPE",
        one_of(DedupeMode),
        "kafka",
        "Duplicate suppression on (`source`, `id`). `kafka`: remembered in the state topic "
        "(`BRIDGE_DEDUPE_TOPIC`), survives restarts and is shared by replicas. `memory`: this "
        "process only. `off`: every delivery is published.",
    )
    topic: str = env(
        "BRIDGE_DEDUPE_TOPIC",
        _topic,
        "{BRIDGE_TOPIC_PREFIX}.dedupe",
        "Topic holding the keys of published events (`cleanup.policy=compact,delete`, "
        "`retention.ms` above the window).",
    )
    window_s: float = env(
        "BRIDGE_DEDUPE_WINDOW_S",
        seconds(1.0, 90 * 86400.0),
        "172800",
        "How long a published event's (`source`, `id`) is remembered, in seconds. Altinn "
        "retries for about 35 h; the default 48 h leaves a margin.",
    )
    max_entries: int = env(
        "BRIDGE_DEDUPE_MAX_ENTRIES",
        int_range(1, 100_000_000),
        "500000",
        "Most keys remembered; the oldest is evicted (and counted) beyond it. 71 bytes each, "
        "reserved at start-up and taken as the window fills (`python -m devtools.dedupe_memory --rss`), "
        "so 34 MiB when the default is full.",
    )


@dataclass(frozen=True, slots=True)
class FilterSettings:
    """Local filters (Altinn refuses source/alternativesubject filters). Empty = all pass."""

    sources: tuple[str, ...] = env(
        "BRIDGE_FILTER_SOURCES",
        _sources,
        "",
        "Allowed event sources, comma-separated. Presets `production`, `tt02`, `at22`, `at23`, "
        "`yt01` stand for that environment's Correspondence API; other entries are URL prefixes "
        "matched at a `/` boundary. Empty = all. `tt02` keeps Correspondence's internal dev "
        "environment (which also publishes into TT02) out.",
    )
    resources: tuple[str, ...] = env(
        "BRIDGE_FILTER_RESOURCES", csv, "", "Allowed `resource` URNs (exact), comma-separated. Empty = all."
    )
    alternativesubjects: tuple[str, ...] = env(
        "BRIDGE_FILTER_ALTERNATIVESUBJECTS",
        csv,
        "",
        "Allowed `alternativesubject` values, comma-separated; an entry ending in `/` or `*` is "
        "a prefix (e.g. `/organisation/`). Events without one are filtered out when set. Empty = all.",
    )
    types: tuple[str, ...] = env(
        "BRIDGE_FILTER_TYPES",
        _types,
        "",
        "Allowed event types, comma-separated, full (`no.altinn.correspondence.x`) or short "
        "(`x`), case-insensitive. Empty = all.",
    )


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """Continuous reconciling from Altinn's pull API; see :mod:`bridge.reconciler`.

    ``altinn`` (where Altinn is, the Maskinporten client) is read only when
    reconciling is on; the one-shot command reads it itself.
    """

    enabled: bool = env(
        "BRIDGE_RECONCILE",
        on_off,
        "off",
        "`on`: one replica at a time pulls the events of `BRIDGE_RECONCILE_RESOURCE` from Altinn's pull "
        "API and publishes those no push delivered (see docs/operations.md); needs `BRIDGE_DEDUPE=kafka` "
        "and the Maskinporten client (`MASKINPORTEN_*`, `ALTINN_*`). `off`: push only.",
    )
    resource: str | None = env(
        "BRIDGE_RECONCILE_RESOURCE",
        _resource,
        "",
        "The resource whose events are reconciled, `urn:altinn:resource:<id>`. Required with `on`.",
    )
    interval_s: float = env(
        "BRIDGE_RECONCILE_INTERVAL_S",
        seconds(0.05, 86400.0),
        "60",
        "Once caught up, how long to wait before asking Altinn again, in seconds. Events become "
        "pullable 30 s after Altinn registered them, so a lost push is repaired within about 30 s + this.",
    )
    page_size: int = env(
        "BRIDGE_RECONCILE_PAGE_SIZE", int_range(1, 1000), "500", "Events asked for per pull."
    )
    cursor_topic: str = env(
        "BRIDGE_RECONCILE_CURSOR_TOPIC",
        _topic,
        "{BRIDGE_TOPIC_PREFIX}.reconcile-cursor",
        "Compacted topic (one partition) holding the reconcile cursor per resource; its consumer "
        "group `<KAFKA_CLIENT_ID>-reconciler` lets one replica reconcile at a time.",
    )
    session_timeout_s: float = env(
        "BRIDGE_RECONCILE_SESSION_TIMEOUT_S",
        seconds(1.0, 600.0),
        "30",
        "Kafka group session timeout of the reconciler, in seconds: a replica that stops "
        "heartbeating loses the cursor to another after this long.",
    )
    altinn: AltinnSettings | None = None

    def problems(self, failed: frozenset[str]) -> list[str]:
        """With ``on``, a resource."""
        if self.enabled and self.resource is None and "BRIDGE_RECONCILE_RESOURCE" not in failed:
            return ["BRIDGE_RECONCILE=on needs BRIDGE_RECONCILE_RESOURCE (urn:altinn:resource:<id>)"]
        return []


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the bridge is configured with. Build with :meth:`from_env`."""

    kafka: KafkaSettings = section(KafkaSettings)
    #: Before the sections whose default topics are built from the prefix.
    topics: TopicSettings = section(TopicSettings)
    http: HttpSettings = section(HttpSettings)
    auth: AuthSettings = section(AuthSettings)
    dedupe: DedupeSettings = section(DedupeSettings)
    record_mode: RecordMode = env(
        "BRIDGE_RECORD_MODE",
        one_of(RecordMode),
        "structured",
        "How records are written. `structured`: the event JSON as value (CloudEvents Kafka "
        "structured mode, byte for byte as received). `binary`: the event's `data` as value and "
        "every attribute as a `ce_` header.",
    )
    invalid_event_policy: InvalidEventPolicy = env(
        "BRIDGE_INVALID_EVENT_POLICY",
        one_of(InvalidEventPolicy),
        "deadletter",
        "`deadletter`: write an invalid body to the dead-letter topic and answer 200 (Altinn "
        "retries every non-2xx for ~35 h, so a 4xx only burns retries). `reject`: answer 400.",
    )
    filters: FilterSettings = section(FilterSettings)
    reconcile: ReconcileSettings = section(ReconcileSettings)
    health: HealthSettings = section(HealthSettings)
    shutdown: ShutdownSettings = section(ShutdownSettings)
    log_level: LogLevel = env(
        "BRIDGE_LOG_LEVEL", one_of(LogLevel), "info", "`debug`, `info`, `warning` or `error`."
    )
    process: ProcessRole = section(ProcessRole)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, serving: bool = True) -> Settings:
        """Settings from environment-like ``environ``; :class:`ConfigError` lists every problem.

        ``serving=False`` is for the one-shot commands (``topics``, ``reconcile``, ``redrive``),
        which serve no HTTP: the server's own sections (HTTP, authentication, readiness,
        shutdown) are not read and keep their defaults, so a missing ``BRIDGE_AUTH_TOKENS`` or
        a TLS file mounted only into the server's pod does not stop them; nor does
        ``BRIDGE_RECONCILE=on`` ask for what continuous reconciling needs.
        """
        reader = Reader(environ, _ALL) if serving else _OneShotReader(environ, _ALL)
        settings = reader.load(cls)
        if serving and settings.reconcile.enabled:
            if settings.dedupe.mode is not DedupeMode.KAFKA:
                # Without the shared window every event pushed before would be published again.
                reader.problems.append(
                    f"BRIDGE_RECONCILE=on needs BRIDGE_DEDUPE=kafka (it is {settings.dedupe.mode})"
                )
            try:
                altinn = AltinnSettings.from_env(environ)
            except ConfigError as exc:
                reader.problems += [f"{p} (needed by BRIDGE_RECONCILE=on)" for p in exc.problems]
            else:
                settings = replace(settings, reconcile=replace(settings.reconcile, altinn=altinn))
        if reader.problems:
            raise ConfigError(reader.problems)
        return settings

    def describe(self) -> dict[str, object]:
        """The effective configuration by variable, as plain data, for the start-up line and check-config."""
        return describe(self)

    @property
    def is_worker(self) -> bool:
        """One of several worker processes sharing the port (``altinn-bridge serve --workers N``)."""
        return self.process.worker_of is not None


_ALL: Final = declared(Settings)
#: The sections only ``serve`` reads; the one-shot commands leave them at their defaults.
_SERVER_SECTIONS: Final[frozenset[type]] = frozenset(
    {HttpSettings, AuthSettings, HealthSettings, ShutdownSettings}
)


class _OneShotReader(Reader):
    """A :class:`Reader` that skips the server's sections (``Settings.from_env(serving=False)``)."""

    def load(self, kind: type[T]) -> T:
        if kind in _SERVER_SECTIONS:
            return kind()
        return super().load(kind)


#: Every variable a user can set, in the order of ``docs/configuration.md``.
VARIABLES: Final[dict[str, Variable]] = {name: v for name, v in _ALL.items() if not v.internal}


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``BRIDGE_*`` names in ``environ`` that the bridge does not read (likely typos).

    Only reported, not fatal: Kubernetes injects ``<SERVICE>_PORT`` style
    variables for every Service, so a Service named "bridge" would add some.
    """
    return sorted(n for n in environ if n.startswith("BRIDGE_") and n not in VARIABLES)

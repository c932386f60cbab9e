"""Settings of the server process: listeners, who may post, readiness, shutdown, worker role.

Declared like the rest of the settings (:mod:`bridge.envconfig`); sections of
:class:`bridge.config.Settings`. Pure: no framework imports.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from bridge.auth import MIN_TOKEN_LENGTH, TOKEN_ALPHABET, parse_networks
from bridge.envconfig import Declarations, csv, int_range, nonempty, one_of, optional, optional_file, seconds

DECLARED: Final = Declarations()
env = DECLARED.setting

_MAX_PORT = 65535
#: Set by the workers' supervisor (bridge.workers) in each worker's environment; outside BRIDGE_*.
WORKER_OF_ENV: Final = "ALTINN_BRIDGE_WORKER_OF"
#: prometheus-client's own variable: where the workers keep their metric values.
METRICS_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
_MIB = 1024 * 1024


class AuthMode(enum.StrEnum):
    """How event requests are authenticated."""

    TOKEN = "token"  # noqa: S105 - a mode's name, not a secret
    NONE = "none"


def _tokens(raw: str) -> tuple[str, ...]:
    tokens = csv(raw)
    for n, token in enumerate(tokens, 1):
        if len(token) < MIN_TOKEN_LENGTH or not set(token) <= TOKEN_ALPHABET:
            # The value itself is secret: say which one and why, never what it is.
            raise ValueError(
                f"token {n} of {len(tokens)} must be at least {MIN_TOKEN_LENGTH} characters of "
                "A-Z a-z 0-9 - . _ ~"
            )
    return tokens


def _networks(raw: str) -> tuple[str, ...]:
    entries = csv(raw)
    parse_networks(entries)  # raises ValueError naming a bad entry
    return entries


def _pid(raw: str) -> int | None:
    return int(raw) if raw else None


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP server."""

    host: str = env(
        "BRIDGE_HTTP_HOST",
        nonempty,
        "0.0.0.0",  # noqa: S104 - a server pod must listen beyond loopback; sidecars set 127.0.0.1
        "Address the HTTP server binds. Use `127.0.0.1` for a sidecar.",
    )
    port: int = env("BRIDGE_HTTP_PORT", int_range(1, _MAX_PORT), "8080", "TCP port of the HTTP server.")
    ops_port: int = env(
        "BRIDGE_OPS_PORT",
        int_range(0, _MAX_PORT),
        "0",
        "TCP port of a second, plain-HTTP listener serving only `/healthz`, `/readyz` and `/metrics`, "
        "on a thread of its own: probes and scrapes are answered promptly even while the event port "
        "is overloaded, and a sidecar bound to 127.0.0.1 can still be scraped. `0` = off (they are "
        "served on the event port only; they always are there too).",
    )
    ops_host: str = env(
        "BRIDGE_OPS_HOST",
        nonempty,
        "0.0.0.0",  # noqa: S104 - probes and Prometheus reach the pod from outside
        "Address the `BRIDGE_OPS_PORT` listener binds.",
    )
    workers: int = env(
        "BRIDGE_WORKERS",
        int_range(1, 64),
        "1",
        "Worker processes sharing the port (SO_REUSEPORT), each with its own producer; metrics "
        "cover all of them. More than one needs a writable temp directory (metrics files). "
        "`altinn-bridge serve --workers N` overrides it.",
    )
    tls_cert_file: str | None = env(
        "BRIDGE_TLS_CERT_FILE",
        optional_file,
        "",
        "PEM certificate (chain) to serve HTTPS directly, for pods without an ingress. Empty: HTTP.",
    )
    tls_key_file: str | None = env(
        "BRIDGE_TLS_KEY_FILE", optional_file, "", "PEM private key of `BRIDGE_TLS_CERT_FILE`."
    )
    max_body_bytes: int = env(
        "BRIDGE_MAX_BODY_BYTES",
        int_range(1024, 64 * _MIB),
        "65536",
        "Largest request body accepted, in bytes; larger is answered 413.",
    )
    max_batch_bytes: int = env(
        "BRIDGE_MAX_BATCH_BYTES",
        int_range(1024, 256 * _MIB),
        "4194304",
        "Largest batch body (`application/cloudevents-batch+json`) accepted, in bytes; larger "
        "is answered 413 without reading it.",
    )
    max_batch_events: int = env(
        "BRIDGE_MAX_BATCH_EVENTS",
        int_range(1, 100_000),
        "500",
        "Most events accepted in one batch; a longer batch is answered 413.",
    )
    keepalive_timeout_s: float = env(
        "BRIDGE_KEEPALIVE_TIMEOUT_S",
        seconds(1.0, 3600.0),
        "75",
        "An idle keep-alive connection, or one that never finishes its request line and headers "
        "(aiohttp has no separate header timeout), is closed after this many seconds. Keep it above "
        "the upstream keep-alive of your ingress or load balancer (nginx: 60 s).",
    )
    read_timeout_s: float = env(
        "BRIDGE_READ_TIMEOUT_S",
        seconds(0.1, 300.0),
        "10",
        "How long a client may take to send its request body, in seconds; slower is answered "
        "408 and the connection closed.",
    )
    max_in_flight: int = env(
        "BRIDGE_MAX_IN_FLIGHT",
        int_range(1, 1_000_000),
        "512",
        "Most requests, and most publishes, waiting for Kafka at once. Beyond it requests are answered "
        "503 with `Retry-After` at once instead of queueing, so memory stays bounded under overload.",
    )

    def problems(self, _: frozenset[str]) -> list[str]:
        """Rules across variables."""
        found = []
        if self.ops_port and self.ops_port == self.port:
            found.append("BRIDGE_OPS_PORT must differ from BRIDGE_HTTP_PORT (or be 0: off)")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            found.append("BRIDGE_TLS_CERT_FILE and BRIDGE_TLS_KEY_FILE must be set together")
        return found


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Who may post events; see :mod:`bridge.auth`. Tokens are excluded from ``repr``."""

    mode: AuthMode = env(
        "BRIDGE_AUTH",
        one_of(AuthMode),
        "token",
        "`token`: every event request must carry one of `BRIDGE_AUTH_TOKENS`, in the path "
        "(`/api/v1/events/<token>`, the only way Altinn can) or as `Authorization: Bearer <token>`. "
        "`none`: no authentication, for local runs or behind a proxy that authenticates. With "
        "`token` and no token the bridge refuses to start.",
    )
    tokens: tuple[str, ...] = env(
        "BRIDGE_AUTH_TOKENS",
        _tokens,
        "",
        "Accepted tokens, comma-separated; several at once for rotation without downtime. Each at "
        "least 24 characters of `A-Z a-z 0-9 - . _ ~`, e.g. from "
        "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`. Never logged: log lines "
        "carry an 8-hex-digit fingerprint.",
        secret=True,
    )
    allowed_networks: tuple[str, ...] = env(
        "BRIDGE_ALLOWED_NETWORKS",
        _networks,
        "",
        "Source addresses allowed to post events: CIDRs, comma-separated, and the presets "
        "`altinn-tt02` (20.100.24.41/32) and `altinn-production` (20.100.46.139/32). Others get "
        "403. Empty = any. Health and metrics endpoints are not restricted.",
    )
    trusted_proxies: tuple[str, ...] = env(
        "BRIDGE_TRUSTED_PROXIES",
        _networks,
        "",
        "CIDRs of proxies (ingress controller, load balancer) whose `Forwarded` or "
        "`X-Forwarded-For` header names the client for `BRIDGE_ALLOWED_NETWORKS`; from any other "
        "peer those headers are ignored.",
    )

    def problems(self, failed: frozenset[str]) -> list[str]:
        """With token auth, at least one token."""
        if self.mode is AuthMode.TOKEN and not self.tokens and "BRIDGE_AUTH_TOKENS" not in failed:
            return [
                (
                    "BRIDGE_AUTH_TOKENS is empty: set at least one token (the URL to register in Altinn is "
                    "https://<host>/api/v1/events/<token>), or BRIDGE_AUTH=none to accept events from anyone "
                    "who can reach the bridge"
                )
            ]
        return []


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Readiness checking."""

    ready_check_interval_s: float = env(
        "BRIDGE_READY_CHECK_INTERVAL_S",
        seconds(0.0, 300.0),
        "5",
        "How long a broker reachability result is reused by `/readyz`, in seconds.",
    )
    ready_check_timeout_s: float = env(
        "BRIDGE_READY_CHECK_TIMEOUT_S",
        seconds(0.1, 60.0),
        "2",
        "Bound on one broker reachability check, in seconds.",
    )


@dataclass(frozen=True, slots=True)
class ShutdownSettings:
    """What happens after SIGTERM."""

    drain_s: float = env(
        "BRIDGE_SHUTDOWN_DRAIN_S",
        seconds(0.0, 300.0),
        "3",
        "After SIGTERM, how long the server keeps answering (503, readiness failed) so load "
        "balancers stop sending, in seconds.",
    )
    grace_s: float = env(
        "BRIDGE_SHUTDOWN_GRACE_S",
        seconds(1.0, 600.0),
        "25",
        "Total shutdown budget after SIGTERM, in seconds: drain, in-flight requests, producer "
        "flush. Keep it below the pod's `terminationGracePeriodSeconds` (30 by default).",
    )

    def problems(self, failed: frozenset[str]) -> list[str]:
        """The drain fits in the grace period."""
        if (
            self.drain_s >= self.grace_s
            and not {"BRIDGE_SHUTDOWN_DRAIN_S", "BRIDGE_SHUTDOWN_GRACE_S"} & failed
        ):
            return [
                (
                    f"BRIDGE_SHUTDOWN_DRAIN_S ({self.drain_s:g}) must be less than "
                    f"BRIDGE_SHUTDOWN_GRACE_S ({self.grace_s:g})"
                )
            ]
        return []


@dataclass(frozen=True, slots=True)
class ProcessRole:
    """Whether this process is one of several workers; set by :mod:`bridge.workers`, never by users."""

    worker_of: int | None = env(
        WORKER_OF_ENV, _pid, "", "Pid of the supervisor this worker belongs to.", internal=True
    )
    metrics_dir: str | None = env(
        METRICS_DIR_ENV,
        optional,
        "",
        "prometheus-client's multiprocess directory, shared by the workers.",
        internal=True,
    )

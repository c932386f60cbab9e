"""``altinn-bridge doctor``: preflight checks of this configuration against Kafka and Altinn.

Reads the same configuration as ``serve`` and prints one row per check (ok, warn,
fail, skipped, and what to do), or JSON with ``--json``. Exit 0 when nothing
failed, 1 when something did (2, a configuration error, is decided by the CLI
before this runs). Read-only, except one marker record in the bridge's own dedupe
state topic (:mod:`bridge.doctor_kafka`). docs/operations.md, "Before go-live",
lists every failure with its fix.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Final, TextIO

from cryptography import x509

from bridge.config import Settings, unknown_variables
from bridge.doctor_altinn import altinn_rows
from bridge.doctor_kafka import kafka_rows
from bridge.doctor_report import Row, exit_code, fail, ok, render_json, render_text, skipped, warn
from bridge.server_settings import AuthMode

#: An ingress certificate expiring sooner than this is a warning.
CERT_WARN_DAYS: Final = 14


def run(settings: Settings, env: Mapping[str, str], *, as_json: bool, out: TextIO) -> int:
    """Run every check, print the rows to ``out``; the exit code."""
    # aiokafka logs each connection failure itself; the rows name them, once.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        rows = asyncio.run(checks(settings, env))
    finally:
        quiet.setLevel(level)
    print(render_json(rows) if as_json else render_text(rows), file=out)
    return exit_code(rows)


async def checks(settings: Settings, env: Mapping[str, str]) -> list[Row]:
    """Every row, in order: the bridge itself, Kafka, Altinn."""
    rows = [check_config(settings, env), check_ingress_certificate(settings)]
    rows += await kafka_rows(settings)
    rows += await altinn_rows(settings, env)
    return rows


def check_config(settings: Settings, env: Mapping[str, str]) -> Row:
    """What ``check-config`` would say: it loads (or the CLI exits 2), plus what is risky."""
    name = "config"
    notes, fixes = [], []
    unknown = unknown_variables(env)
    if unknown:
        notes.append(f"unknown BRIDGE_* variables ignored (typo?): {', '.join(unknown)}")
        fixes.append("remove or correct them (docs/configuration.md lists every variable)")
    if settings.auth.mode is AuthMode.NONE:
        notes.append("BRIDGE_AUTH=none: anyone who can reach the bridge can post events")
        fixes.append("set BRIDGE_AUTH_TOKENS and register https://<host>/api/v1/events/<token> in Altinn")
    if notes:
        return warn(name, "\n".join(notes), "; ".join(fixes))
    return ok(name, "the configuration loads (`altinn-bridge check-config` prints it)")


def check_ingress_certificate(settings: Settings, *, now: dt.datetime | None = None) -> Row:
    """``BRIDGE_TLS_CERT_FILE``: readable, and not expiring within :data:`CERT_WARN_DAYS` days."""
    name = "ingress.tls-certificate"
    path = settings.http.tls_cert_file
    if path is None:
        return skipped(name, "BRIDGE_TLS_CERT_FILE not set (TLS ends at the ingress)")
    try:
        with open(path, "rb") as file:  # noqa: PTH123 - one read
            certificate = x509.load_pem_x509_certificate(file.read())
    except (OSError, ValueError) as exc:
        return fail(
            name, f"BRIDGE_TLS_CERT_FILE={path}: not a readable PEM certificate ({exc})", "fix the file"
        )
    now = now or dt.datetime.now(dt.UTC)
    expires = certificate.not_valid_after_utc
    left = expires - now
    subject = certificate.subject.rfc4514_string()
    when = f"{subject} expires {expires:%Y-%m-%d %H:%M} UTC"
    if left.total_seconds() <= 0:
        return fail(name, f"{when}: expired; Altinn's pushes fail TLS", "renew BRIDGE_TLS_CERT_FILE")
    if left < dt.timedelta(days=CERT_WARN_DAYS):
        return warn(name, f"{when}: in {left.days} day(s)", "renew BRIDGE_TLS_CERT_FILE before it expires")
    return ok(name, f"{when} (in {left.days} days)")

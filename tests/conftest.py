"""Shared test plumbing: fixtures on disk, a fake Publisher, suite-wide log capture.

Every log line the suite produces (in-process apps and bridge subprocesses) is
written under one directory; at the end of the session it is scanned for the
national identity numbers that occur in the fixtures, and the run fails if one
leaked.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.config import LogLevel, Settings
from bridge.errors import PublishError
from bridge.logs import configure_logging
from bridge.publisher import Delivery
from bridge.routing import Headers

#: Fixtures of the fake Maskinporten + Altinn (client_key, key_file, clock, fake, urls, altinn_env),
#: for tests/altinn and the reconciler's integration tests.
pytest_plugins = ["tests.fake_altinn"]

FIXTURES = Path(__file__).parent / "fixtures" / "altinn-events"
VALID = sorted((FIXTURES / "valid").glob("*.json"))
INVALID = sorted(p for p in (FIXTURES / "invalid").iterdir() if p.suffix in (".json", ".txt"))
VALIDATION_FIXTURE = FIXTURES / "valid" / "19-validation-event.json"
ALTINN_CONTENT_TYPE = "application/json; charset=utf-8"

#: Where every log line of this test session goes (scanned at the end).
LOG_DIR = Path(tempfile.mkdtemp(prefix="bridge-test-logs-"))

_NATIONAL_ID = re.compile(r"(?<!\d)\d{11}(?!\d)")


def national_ids_in_fixtures() -> set[str]:
    """The 11-digit numbers that occur in person subjects of the fixtures."""
    found: set[str] = set()
    for path in FIXTURES.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            for match in re.finditer(r"(?:/person/|identifier-no:)(\d{11})(?!\d)", text):
                found.add(match.group(1))
    return found


def leaked_lines(log_dir: Path, secrets: set[str]) -> list[str]:
    """Lines in any ``*.log`` under ``log_dir`` that contain one of ``secrets``."""
    hits = []
    for path in sorted(log_dir.rglob("*.log")):
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(s in line for s in secrets):
                hits.append(f"{path.name}:{n}: {line[:300]}")
    return hits


def pytest_configure(config: pytest.Config) -> None:
    """Send the in-process bridge's logs to the suite's log directory."""
    stream = (LOG_DIR / "in-process.log").open("ab", buffering=0)
    config.stash[_LOG_STREAM] = stream
    configure_logging(LogLevel.DEBUG, stream=stream)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run if any log line carries a national identity number from the fixtures."""
    secrets = national_ids_in_fixtures()
    hits = leaked_lines(LOG_DIR, secrets)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_sep("=", "national identity numbers found in logs", red=True)
            for hit in hits[:50]:
                reporter.write_line(hit)
    elif reporter is not None:
        reporter.write_line(
            f"log scan: no national identity number ({len(secrets)} known) in the logs under {LOG_DIR}"
        )


_LOG_STREAM = pytest.StashKey[Any]()


# --- fake publisher --------------------------------------------------------


@dataclass
class Record:
    """One record the fake publisher accepted."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


@dataclass
class FakePublisher:
    """A :class:`bridge.publisher.Publisher` that keeps records in memory.

    ``fail_with`` makes publishes raise; ``delay_s`` holds each publish;
    ``reachable`` drives ``check``.
    """

    records: list[Record] = field(default_factory=list)
    fail_with: PublishError | None = None
    delay_s: float = 0.0
    reachable: bool = True
    started: bool = False
    stopped: bool = False
    checks: int = 0

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> Delivery:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_with is not None:
            raise self.fail_with
        partition_offsets = [r for r in self.records if r.topic == topic]
        self.records.append(Record(topic, key, value, list(headers)))
        return Delivery(topic, 0, len(partition_offsets))

    def submit(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers
    ) -> asyncio.Future[Delivery]:
        return asyncio.ensure_future(self.publish(topic, key, value, headers))

    async def check(self, timeout_s: float) -> None:  # noqa: ARG002 - same signature as the real one
        self.checks += 1
        if not self.reachable:
            raise PublishError("KafkaConnectionError", "no broker reachable (fake)")


def make_settings(**env: str) -> Settings:
    """Settings from a dict, with a bootstrap server that is never contacted.

    Dedupe is kept in memory unless a test asks otherwise: the production default
    (``kafka``) reads a state topic, which the HTTP tests' fake publisher has not.
    Authentication is off unless a test asks for it (the production default needs
    a token).
    """
    return Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "BRIDGE_DEDUPE": "memory", "BRIDGE_AUTH": "none", **env}
    )


@pytest.fixture
def fake_publisher() -> FakePublisher:
    return FakePublisher()

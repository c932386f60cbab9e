"""Every log line of the session in one directory, scanned at the end for national identity numbers.

In-process apps log to ``in-process.log`` there; bridge subprocesses and brokers write
their own files beside it. At the end of the session every ``*.log`` is scanned for the
11-digit numbers that occur in the fixtures' person subjects, and the run fails if one
leaked. A plugin (tests/conftest.py lists it).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bridge.config import LogLevel
from bridge.logs import configure_logging
from tests.support.events import FIXTURES

#: Where every log line of this test session goes (scanned at the end).
LOG_DIR = Path(tempfile.mkdtemp(prefix="bridge-test-logs-"))

_LOG_STREAM = pytest.StashKey[Any]()


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

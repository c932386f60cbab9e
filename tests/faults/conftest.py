"""Fixtures of the fault tests: the integration suite's brokers and bridge processes.

pytest only sees fixtures defined in (or imported into) a conftest on the test's
path, so the ones the scenarios use are imported here.
"""

from __future__ import annotations

import pytest

from tests.faults.load import REPORTED
from tests.integration.conftest import (  # noqa: F401 - imported so pytest registers them
    durable_broker,
    http,
    kafka_bootstrap,
    own_broker,
    start_bridge,
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Each fault scenario's line, also when output is captured (as in CI)."""
    if REPORTED:
        terminalreporter.write_sep("-", "fault scenarios")
        for line in REPORTED:
            terminalreporter.write_line(line)

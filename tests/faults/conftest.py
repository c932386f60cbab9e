"""The fault scenarios' summary: each scenario's line, also when output is captured (as in CI).

Their brokers and bridge processes are the shared fixtures of tests/support.
"""

from __future__ import annotations

import pytest

from tests.faults.accounting import REPORTED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Each fault scenario's line, also when output is captured (as in CI)."""
    if REPORTED:
        terminalreporter.write_sep("-", "fault scenarios")
        for line in REPORTED:
            terminalreporter.write_line(line)

"""Fuzz tests: the shared apps, one case-count line per test, and their total.

The ``fuzz`` marker is registered in pyproject.toml.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.fuzz.harness import Harness
from tests.fuzz.support import RESULTS, FuzzStats


@pytest.fixture
def fuzz_stats(request: pytest.FixtureRequest) -> Iterator[FuzzStats]:
    """Counts of the calling test, printed as one ``fuzz: …`` line at the end of the run."""
    name = request.node.originalname.removeprefix("test_")
    stats = FuzzStats(name)
    yield stats
    stats.seconds = time.monotonic() - stats.started
    RESULTS.setdefault(name, FuzzStats(name)).merge(stats)


@pytest.fixture(scope="session")
def harness() -> Iterator[Harness]:
    """Every configuration's app on aiohttp's test server (tests/fuzz/harness.py)."""
    h = Harness()
    yield h
    h.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if call.when == "call" and report.failed:
        stats = getattr(item, "funcargs", {}).get("fuzz_stats")
        if isinstance(stats, FuzzStats) and stats.failures == 0:
            stats.failures = 1
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.write_sep("-", "fuzz case counts")
    results = list(RESULTS.values())
    for stats in results:
        terminalreporter.write_line(stats.line())
    cases = sum(s.cases for s in results)
    failures = sum(s.failures for s in results)
    known = sum(sum(s.known_bug_hits.values()) for s in results)
    seconds = sum(s.seconds for s in results)
    terminalreporter.write_line(
        f"fuzz: total cases={cases} failures={failures} known_bug_500s={known} tests={len(results)} "
        f"time={seconds:.1f}s"
    )

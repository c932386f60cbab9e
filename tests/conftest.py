"""The suite's one registry of shared fixtures and its collection rules.

Fixtures shared across folders live in tests/support and are registered here, once
(pytest honours ``pytest_plugins`` only in this top-level conftest). Folder conftests
keep only what is specific to their folder. At collection the run stops if a test module
of a marked folder lacks its marker, or a test starts a broker or bridge process without
one (tests/support/markers.py): the fast set (unit, http, altinn) starts no process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.markers import unmarked_modules, unmarked_process_users

pytest_plugins = [
    "tests.support.logs",  # every log line in one directory, scanned for national identity numbers
    "tests.support.fakes",  # fake_publisher
    "tests.support.http",  # http (a client session)
    "tests.support.broker",  # kafka_bootstrap, own_broker, durable_broker
    "tests.support.bridge_process",  # start_bridge
    "tests.support.altinn",  # client_key, key_file, clock, fake, urls, altinn_env
]

TESTS_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Stop the run when a marked folder's module lacks its marker or an unmarked test starts processes."""
    modules = {module for item in items if (module := item.getparent(pytest.Module)) is not None}
    problems = unmarked_modules(TESTS_DIR, ((m.path, [mark.name for mark in m.own_markers]) for m in modules))
    problems += unmarked_process_users(
        (item.nodeid, getattr(item, "fixturenames", ()), [mark.name for mark in item.iter_markers()])
        for item in items
    )
    if problems:
        raise pytest.UsageError("test markers:\n  " + "\n  ".join(sorted(problems)))

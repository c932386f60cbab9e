"""The collection rules of tests/conftest.py: folder markers, and who may start processes."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.support.markers import FOLDER_MARKERS, unmarked_modules, unmarked_process_users

TESTS = Path("/repo/tests")
ROOT = Path(__file__).parents[2]


def test_a_module_of_a_marked_folder_without_its_marker_is_named() -> None:
    modules = [
        (TESTS / "integration" / "test_reconciler.py", []),
        (TESTS / "integration" / "test_publisher.py", ["integration"]),
        (TESTS / "faults" / "test_broker_kill.py", ["integration", "timeout"]),
        (TESTS / "fuzz" / "test_http_edges.py", ["fuzz"]),
        (TESTS / "deploy" / "test_image.py", ["deploy", "parametrize"]),
    ]
    assert unmarked_modules(TESTS, modules) == [
        "tests/integration/test_reconciler.py lacks `pytestmark = pytest.mark.integration`",
        "tests/faults/test_broker_kill.py lacks `pytestmark = pytest.mark.faults`",
    ]


def test_modules_of_other_folders_need_no_marker() -> None:
    modules = [
        (TESTS / "unit" / "test_routing.py", []),
        (TESTS / "http" / "test_ingress.py", []),
        (TESTS / "altinn" / "test_auth.py", []),
        (TESTS / "test_top_level.py", []),
    ]
    assert unmarked_modules(TESTS, modules) == []


def test_a_test_that_starts_processes_must_carry_a_folder_marker() -> None:
    tests = [
        ("tests/http/test_x.py::test_a", ["make_client", "kafka_bootstrap"], []),
        ("tests/unit/test_x.py::test_b", ["start_bridge", "own_broker"], ["parametrize"]),
        ("tests/integration/test_x.py::test_c", ["kafka_bootstrap", "start_bridge"], ["integration"]),
        ("tests/deploy/test_x.py::test_d", ["start_bridge"], ["deploy"]),
        ("tests/http/test_x.py::test_e", ["make_client", "fake_publisher"], []),
    ]
    markers = "['deploy', 'faults', 'fuzz', 'integration']"
    assert unmarked_process_users(tests) == [
        f"tests/http/test_x.py::test_a uses kafka_bootstrap but has none of the markers {markers}",
        f"tests/unit/test_x.py::test_b uses own_broker, start_bridge but has none of the markers {markers}",
    ]


def test_every_folder_marker_is_declared() -> None:
    """``--strict-markers`` refuses an undeclared marker; each folder's is in pyproject.toml."""
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    declared = {line.split(":", 1)[0] for line in pytest_options["markers"]}
    assert set(FOLDER_MARKERS.values()) <= declared
    assert all((ROOT / "tests" / folder).is_dir() for folder in FOLDER_MARKERS)

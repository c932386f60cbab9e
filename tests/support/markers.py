"""Which tests may start processes, and the markers that say so.

Every test module in a folder below carries that folder's marker (``pytestmark =
pytest.mark.<folder>``, declared in pyproject.toml), so ``-m`` selects whole folders and
nothing slips through untagged: pytest ignores a ``pytestmark`` in a conftest. Fixtures
that start a broker or a bridge process are for marked tests only, so the fast set
(tests/unit, tests/http, tests/altinn) never starts one. tests/conftest.py applies both
rules at collection and stops the run when one is broken.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: Folder under tests/ → the marker each of its test modules sets.
FOLDER_MARKERS = {"integration": "integration", "faults": "faults", "fuzz": "fuzz", "deploy": "deploy"}
#: Fixtures that start a broker, an S3 server or a bridge subprocess.
PROCESS_FIXTURES = frozenset({"kafka_bootstrap", "own_broker", "durable_broker", "start_bridge"})


def unmarked_modules(tests_dir: Path, modules: Iterable[tuple[Path, Iterable[str]]]) -> list[str]:
    """Modules (path, names of the module's own markers) in a marked folder that lack its marker."""
    problems = []
    for path, markers in modules:
        parts = path.relative_to(tests_dir).parts
        wanted = FOLDER_MARKERS.get(parts[0]) if len(parts) > 1 else None
        if wanted is not None and wanted not in set(markers):
            problems.append(f"{path.relative_to(tests_dir.parent)} lacks `pytestmark = pytest.mark.{wanted}`")
    return problems


def unmarked_process_users(tests: Iterable[tuple[str, Iterable[str], Iterable[str]]]) -> list[str]:
    """Tests (id, fixture names, marker names) that start processes without a folder marker."""
    problems = []
    folder_markers = set(FOLDER_MARKERS.values())
    for test_id, fixtures, markers in tests:
        starts = PROCESS_FIXTURES & set(fixtures)
        if starts and not folder_markers & set(markers):
            uses = ", ".join(sorted(starts))
            problems.append(f"{test_id} uses {uses} but has none of the markers {sorted(folder_markers)}")
    return problems

"""docs/configuration.md documents the code: its tables are the ones the declarations generate."""

import re

from bridge.altinn.settings import VARIABLES as ALTINN_VARIABLES
from bridge.config import VARIABLES
from devtools.config_table import DOC, TABLES, render

_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \|", re.MULTILINE)


def test_configuration_doc_tables_match_the_declarations():
    text = DOC.read_text()
    assert render(text) == text, "docs/configuration.md is stale: python -m devtools.config_table --write"


def _generated_rows(text: str) -> list[str]:
    """Variable names in the tables that follow the generator's markers."""
    names = []
    for marker in TABLES:
        table = text[text.index(marker) :].split("\n\n", 1)[0]
        names += _ROW.findall(table)
    return names


def test_every_variable_has_one_row_and_no_other_row_exists():
    documented = _generated_rows(DOC.read_text())
    assert documented == [*VARIABLES, *ALTINN_VARIABLES]
    # Set by the bridge for its own worker processes, not by users.
    assert "ALTINN_BRIDGE_WORKER_OF" not in documented

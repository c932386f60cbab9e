"""The README documents the code: its configuration table is the one the code generates."""

from pathlib import Path

from devtools.config_table import table

README = Path(__file__).parents[2] / "README.md"


def test_readme_config_table_matches_the_code():
    assert table() in README.read_text(), "README config table is stale: python -m devtools.config_table"

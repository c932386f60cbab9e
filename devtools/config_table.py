"""The README's configuration table, from ``bridge.config.VARIABLES``.

``python -m devtools.config_table`` prints it; ``--write`` puts it into README.md
below the ``config-table`` marker. A unit test keeps the README in step.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bridge.config import VARIABLES

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- config-table"


def table() -> str:
    """The Markdown table: variable, default, meaning."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, var in VARIABLES.items():
        default = (
            "*(required)*" if var.default is None else (f"`{var.default}`" if var.default else "*(empty)*")
        )
        lines.append(f"| `{name}` | {default} | {var.help} |")
    return "\n".join(lines)


def write(readme: Path = README) -> None:
    """Replace the table that follows the marker line in ``readme``."""
    text = readme.read_text()
    start = text.index("\n", text.index(MARKER)) + 1
    rest = text[start:].split("\n")
    end = next(n for n, line in enumerate(rest) if not line.startswith("|"))
    readme.write_text(text[:start] + table() + "\n" + "\n".join(rest[end:]))


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        print(table())

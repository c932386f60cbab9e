"""The configuration tables of ``docs/configuration.md``, from the settings' declarations.

``python -m devtools.config_table`` prints them; ``--write`` puts each below its
marker line in docs/configuration.md. A unit test keeps the document in step.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

from bridge.altinn import settings as altinn_settings
from bridge.config import VARIABLES
from bridge.envconfig import Variable

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
#: Marker comment → the variables whose table follows it.
TABLES: dict[str, Mapping[str, Variable]] = {
    "<!-- config-table": VARIABLES,
    "<!-- altinn-config-table": altinn_settings.VARIABLES,
}


def _default(var: Variable) -> str:
    if var.template is None:
        return "*(required)*"
    if not var.template:
        return "*(empty)*"
    # A default built from another variable shows which: `<BRIDGE_TOPIC_PREFIX>.unknown`.
    return "`" + re.sub(r"\{([A-Z0-9_]+)\}", r"<\1>", var.template) + "`"


def table(variables: Mapping[str, Variable]) -> str:
    """The Markdown table: variable, default, meaning (secrets say so)."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, var in variables.items():
        secret = " Secret: never logged or shown." if var.secret and "Never logged" not in var.help else ""
        lines.append(f"| `{name}` | {_default(var)} | {var.help}{secret} |")
    return "\n".join(lines)


def render(text: str) -> str:
    """``text`` with the table after each marker replaced by the generated one."""
    for marker, variables in TABLES.items():
        start = text.index("\n", text.index(marker)) + 1
        rest = text[start:].split("\n")
        end = next(n for n, line in enumerate(rest) if not line.startswith("|"))
        text = text[:start] + table(variables) + "\n" + "\n".join(rest[end:])
    return text


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        DOC.write_text(render(DOC.read_text()))
    else:
        print("\n\n".join(table(v) for v in TABLES.values()))

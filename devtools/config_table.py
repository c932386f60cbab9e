"""Print the README's configuration table from ``bridge.config.VARIABLES``:
``python -m devtools.config_table``. A unit test keeps the README in step."""

from __future__ import annotations

from bridge.config import VARIABLES


def table() -> str:
    """The Markdown table: variable, default, meaning."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, var in VARIABLES.items():
        default = (
            "*(required)*" if var.default is None else (f"`{var.default}`" if var.default else "*(empty)*")
        )
        lines.append(f"| `{name}` | {default} | {var.help} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())

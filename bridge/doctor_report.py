"""The rows ``altinn-bridge doctor`` prints, and how they are shown. Pure: no framework imports.

One row per check: what was checked, ``ok``/``warn``/``fail``/``skipped``, what was
found, and — when it is not ``ok`` — what to do. A table for people, JSON for
machines; the exit code says whether anything failed.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import orjson


class Status(enum.StrEnum):
    """The outcome of one check."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Row:
    """One check's result. ``detail`` and ``fix`` never carry a secret."""

    check: str
    status: Status
    detail: str
    fix: str = ""


def ok(check: str, detail: str) -> Row:
    """A passed check."""
    return Row(check, Status.OK, detail)


def warn(check: str, detail: str, fix: str) -> Row:
    """A check that passed with a risk worth knowing."""
    return Row(check, Status.WARN, detail, fix)


def fail(check: str, detail: str, fix: str) -> Row:
    """A check that failed: the bridge will not work as configured."""
    return Row(check, Status.FAIL, detail, fix)


def skipped(check: str, detail: str) -> Row:
    """A check that does not apply to this configuration, or could not run."""
    return Row(check, Status.SKIPPED, detail)


def exit_code(rows: Sequence[Row]) -> int:
    """1 when a check failed, else 0 (2, a configuration error, is the CLI's)."""
    return 1 if any(r.status is Status.FAIL for r in rows) else 0


def summary(rows: Sequence[Row]) -> str:
    """``doctor: 9 ok, 1 warn, 1 fail, 2 skipped``."""
    counts = Counter(r.status for r in rows)
    return "doctor: " + ", ".join(f"{counts[s]} {s}" for s in Status)


def render_text(rows: Sequence[Row]) -> str:
    """The table: status, check, detail; the fix on the line below a row that is not ok."""
    width = max((len(r.check) for r in rows), default=5)
    lines = []
    for row in rows:
        detail_lines = row.detail.splitlines() or [""]
        lines.append(f"{row.status.value:<8} {row.check:<{width}}  {detail_lines[0]}")
        lines += [f"{'':<8} {'':<{width}}  {more}" for more in detail_lines[1:]]
        if row.fix and row.status is not Status.OK:
            lines.append(f"{'':<8} {'':<{width}}  fix: {row.fix}")
    lines.append(summary(rows))
    return "\n".join(lines)


def render_json(rows: Sequence[Row]) -> str:
    """``{"ok": bool, "rows": [{"check", "status", "detail", "fix"}, …]}``."""
    document = {
        "ok": exit_code(rows) == 0,
        "summary": {s.value: sum(1 for r in rows if r.status is s) for s in Status},
        "rows": [
            {"check": r.check, "status": r.status.value, "detail": r.detail, "fix": r.fix} for r in rows
        ],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()

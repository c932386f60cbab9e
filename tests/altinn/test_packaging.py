"""The wheel (and so the image) carries every sub-package: pyproject lists packages one by one."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_every_bridge_package_is_in_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "bridge").rglob("__init__.py")
    }
    assert "bridge.altinn" in on_disk
    assert on_disk == listed

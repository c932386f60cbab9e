"""Write the checked-in OpenAPI document, ``docs/openapi.json``, from ``bridge.openapi``:
``python -m devtools.openapi_export``. A unit test keeps the file in step with the code.

The document depends a little on the configuration (limits, token routes); the
checked-in one is for the defaults of a production deployment, token auth on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from bridge.config import Settings
from bridge.openapi import document

PATH = Path(__file__).parents[1] / "docs" / "openapi.json"

#: Production defaults: only the two variables without a usable default. Neither appears in the document.
ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    "BRIDGE_AUTH_TOKENS": "placeholder-token-never-used-0000",
}


def render() -> bytes:
    """The document as checked in: indented JSON, keys in the code's order, a final newline."""
    return orjson.dumps(document(Settings.from_env(ENV)), option=orjson.OPT_INDENT_2) + b"\n"


def main() -> int:
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_bytes(render())
    print(f"wrote {PATH.relative_to(Path.cwd()) if PATH.is_relative_to(Path.cwd()) else PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

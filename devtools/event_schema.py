"""The event's JSON Schema as a file of its own, from the AsyncAPI document.

``docs/asyncapi.yaml`` is the one source: its ``components.schemas.CorrespondenceCloudEvent``
is the payload schema of every event topic. ``python -m devtools.event_schema`` prints it as a
standalone JSON Schema (draft-07, the dialect AsyncAPI schemas build on); ``--write`` puts it in
docs/schemas/correspondence-event.schema.json. A unit test keeps the file in step and checks it
against the fixtures of real Altinn events.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

DOCS = Path(__file__).resolve().parent.parent / "docs"
ASYNCAPI = DOCS / "asyncapi.yaml"
SCHEMA = DOCS / "schemas" / "correspondence-event.schema.json"
#: The component of the AsyncAPI document that is the event.
COMPONENT = "CorrespondenceCloudEvent"


def schema(asyncapi: dict[str, Any]) -> dict[str, Any]:
    """The event's schema from the parsed AsyncAPI document, with what a standalone file needs."""
    component = asyncapi["components"]["schemas"][COMPONENT]
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "urn:altinn-kafka-bridge:schemas:correspondence-event",
        "title": "Altinn Correspondence CloudEvent",
        "$comment": (
            f"Generated from docs/asyncapi.yaml (components.schemas.{COMPONENT}) by "
            "`python -m devtools.event_schema --write`; edit that, not this file. "
            f"Version {asyncapi['info']['version']} of the record contract."
        ),
        **component,
    }


def render() -> str:
    """The file's text: the schema as indented JSON."""
    document = yaml.safe_load(ASYNCAPI.read_text())
    return json.dumps(schema(document), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        SCHEMA.parent.mkdir(exist_ok=True)
        SCHEMA.write_text(render())
    else:
        sys.stdout.write(render())

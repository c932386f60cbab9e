"""The contract for consuming teams: the AsyncAPI document (validated by the AsyncAPI CLI and
checked against the code and the fixtures) and the example consumer, run against the broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import referencing
import yaml

from bridge.config import VARIABLES
from bridge.routing import RECORD_CONTENT_TYPE, Router
from devtools.show_topic import read_topics
from tests.deploy.conftest import NODE_TOOLS, ROOT, node_tools_ready, tool
from tests.support.events import ALTINN_CONTENT_TYPE, INVALID, VALID, VALIDATION_FIXTURE
from tests.support.settings import make_settings
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.deploy

ASYNCAPI = ROOT / "docs" / "asyncapi.yaml"
CONSUMERS = ROOT / "docs" / "consumers.md"
EXAMPLE = ROOT / "examples" / "consumer.py"
#: The bridge with its defaults: the topics the contract describes.
DEFAULTS = make_settings()


def _document() -> dict[str, Any]:
    return yaml.safe_load(ASYNCAPI.read_text())


def _asyncapi(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    """``asyncapi validate`` with warnings as failures and its usage analytics off."""
    node_tools_ready()
    settings = tmp_path / "asyncapi-analytics.json"
    settings.write_text(
        json.dumps({"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "test"})
    )
    env = {**os.environ, "ASYNCAPI_METRICS_CONFIG_PATH": str(settings), "CI": "true", "HOME": str(tmp_path)}
    return subprocess.run(
        [tool("asyncapi"), "validate", str(path), "--fail-severity", "warn", "--diagnostics-format", "text"],
        cwd=NODE_TOOLS,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_asyncapi_cli_validates_the_document(tmp_path: Path) -> None:
    result = _asyncapi(ASYNCAPI, tmp_path)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    assert "is valid" in output, output
    # Information only (the CLI suggests AsyncAPI 3.1; the issue asks for 3.0).
    diagnostics = [line for line in output.splitlines() if line.startswith(str(ASYNCAPI))]
    assert all(" information " in line for line in diagnostics), output


def test_asyncapi_cli_refuses_a_broken_document(tmp_path: Path) -> None:
    """The check can fail: an operation pointing at a channel that does not exist."""
    document = _document()
    document["operations"]["receive-correspondencepublished"]["channel"] = {"$ref": "#/channels/nowhere"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(document))
    assert _asyncapi(broken, tmp_path).returncode != 0


def test_channels_are_the_topics_the_bridge_writes() -> None:
    document = _document()
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == set(Router(DEFAULTS.topics).all_topics())
    # The dedupe state topic is the bridge's own, not a contract with consumers.
    assert DEFAULTS.dedupe.topic not in addresses
    for name, channel in document["channels"].items():
        assert channel["bindings"]["kafka"]["topic"] == channel["address"], name
        assert f"receive-{name}" in document["operations"], name


def _schemas() -> tuple[dict[str, Any], referencing.Registry]:
    document = _document()
    resource = referencing.Resource.from_contents(
        document, default_specification=referencing.jsonschema.DRAFT7
    )
    return document["components"]["schemas"], referencing.Registry().with_resource("", resource)


def _validator(name: str) -> jsonschema.Draft7Validator:
    schemas, registry = _schemas()
    return jsonschema.Draft7Validator(schemas[name], registry=registry)


def test_headers_schema_is_what_the_router_writes() -> None:
    validator = _validator("CloudEventHeaders")
    schema = _schemas()[0]["CloudEventHeaders"]
    router = Router(DEFAULTS.topics)
    from bridge.events import parse_event  # noqa: PLC0415

    for path in VALID:
        if path == VALIDATION_FIXTURE:
            continue
        route = router.route(parse_event(path.read_bytes()))
        headers = {name: value.decode() for name, value in route.headers}
        validator.validate(headers)
        assert set(headers) <= set(schema["properties"])
    assert schema["properties"]["content-type"]["const"] == RECORD_CONTENT_TYPE.decode()


def test_payload_schema_accepts_every_real_event_and_refuses_every_invalid_one() -> None:
    validator = _validator("CorrespondenceCloudEvent")
    for path in VALID:
        if path != VALIDATION_FIXTURE:
            validator.validate(orjson.loads(path.read_bytes()))
    for path in INVALID:
        try:
            body = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            continue  # not JSON at all: no schema to speak of
        assert not validator.is_valid(body), f"{path.name} passes the schema but the bridge refuses it"


def test_example_in_the_document_is_valid() -> None:
    document = _document()
    message = document["components"]["messages"]["CorrespondenceEvent"]
    for example in message["examples"]:
        _validator("CorrespondenceCloudEvent").validate(example["payload"])
        _validator("CloudEventHeaders").validate(example["headers"])


def test_consumers_md_names_every_topic_header_and_the_delivery_semantics() -> None:
    text = CONSUMERS.read_text()
    lowered = text.lower()
    for topic in Router(DEFAULTS.topics).all_topics():
        assert f"`{topic}`" in text, topic
    for header in _schemas()[0]["CloudEventHeaders"]["properties"]:
        assert f"`{header}`" in text, header
    for phrase in ("at least once", "ce_id", "ordering", "partition", "BRIDGE_RECORD_MODE"):
        assert phrase.lower() in lowered, phrase
    assert "BRIDGE_RECORD_MODE" in VARIABLES


async def test_example_consumer_handles_each_event_once(kafka_bootstrap, start_bridge, http) -> None:
    # Dedupe off, so the same event lands twice, as it can with the bridge's defaults too.
    bridge = start_bridge(kafka_bootstrap, BRIDGE_DEDUPE="off")
    # A second bridge writing binary-mode records (attributes in ce_ headers, empty value) to the
    # same topics: the consumer reads both modes, and dedupes across them on (source, id).
    binary = start_bridge(kafka_bootstrap, BRIDGE_DEDUPE="off", BRIDGE_RECORD_MODE="binary")
    await wait_for_status(http, bridge.url + "/readyz", 200)
    await wait_for_status(http, binary.url + "/readyz", 200)
    events = [orjson.loads(p.read_bytes()) for p in VALID if p != VALIDATION_FIXTURE]
    # A marker so this test recognises its own records among the session broker's.
    bodies = [orjson.dumps({**e, "id": f"{e['id']}-consumer-test"}) for e in events]
    binary_only = {**events[3], "id": f"{events[3]['id']}-binary-consumer-test"}
    posts = [(bridge, body) for body in [*bodies, bodies[0], bodies[1]]]
    posts += [(binary, bodies[2]), (binary, orjson.dumps(binary_only))]
    for to, body in posts:
        async with http.post(
            to.url + "/api/v1/events", data=body, headers={"Content-Type": ALTINN_CONTENT_TYPE}
        ) as response:
            assert response.status == 200, await response.text()
    in_kafka = [
        r
        for r in read_topics(kafka_bootstrap, Router(DEFAULTS.topics).all_topics())
        if b"-consumer-test" in r["value"] or r["headers"].get("ce_id", b"").endswith(b"-consumer-test")
    ]
    assert len(in_kafka) == len(posts)
    binary_records = [r for r in in_kafka if "ce_id" in r["headers"]]
    assert len(binary_records) == 2
    assert all(r["value"] == b"" for r in binary_records)

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--bootstrap",
        kafka_bootstrap,
        "--group",
        "example-consumer-test",
        "--from-beginning",
        "--idle-exit-s",
        "8",
        "--session-timeout-ms",
        "3000",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 0, stderr.decode(errors="replace")
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    ours = [line for line in lines if str(line.get("id", "")).endswith("-consumer-test")]
    handled = [line for line in ours if line["event"] == "handled"]
    skipped = [line for line in ours if line["event"] == "duplicate skipped"]
    sent = {f"{e['id']}-consumer-test": e for e in events} | {binary_only["id"]: binary_only}
    assert sorted(line["id"] for line in handled) == sorted(sent)
    # Two structured duplicates, and the binary copy of a structured record.
    assert sorted(line["id"] for line in skipped) == sorted(
        orjson.loads(body)["id"] for body in (bodies[0], bodies[1], bodies[2])
    )
    for line in handled:
        event = sent[line["id"]]
        assert line["resourceinstance"] == event["resourceinstance"]
        assert line["topic"] == Router(DEFAULTS.topics).topic_for(event["type"])
        assert line["time"] == event.get("time")
    assert bridge.terminate() == 0
    assert binary.terminate() == 0

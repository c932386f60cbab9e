"""``make conformance`` against the suite's broker, as part of ``make test``, so it cannot rot.

The runner (devtools/conformance.py) is what a platform team points at its own cluster;
here it runs against Tansu, which cannot do the idempotent producer: the summary must say
idempotence was off. Its topics are its own (a random prefix) and gone afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.logs import LOG_DIR

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BEHAVIOURS = (
    "doctor",
    "fixtures published",
    "dead-lettering",
    "dedupe across a restart",
    "two bridges share the window",
    "single reconciler leader",
)


async def _topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


def test_conformance_passes_and_leaves_no_topic_behind(kafka_bootstrap: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "KAFKA_", "CONFORMANCE_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        KAFKA_ENABLE_IDEMPOTENCE=os.environ.get("KAFKA_ENABLE_IDEMPOTENCE", "false"),
        CONFORMANCE_REPLICATION_FACTOR="1",
        CONFORMANCE_LOG_DIR=str(LOG_DIR / "conformance"),  # scanned for national identity numbers too
    )
    result = subprocess.run(
        [sys.executable, "-m", "devtools.conformance"],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    lines = out.splitlines()
    prefix = next(line for line in lines if line.startswith("topic prefix: ")).split()[2]
    assert prefix.startswith("conformance.")
    for behaviour in BEHAVIOURS:
        assert any(line.startswith(f"PASS  {behaviour} ") for line in lines), (behaviour, out)
    assert lines[-1] == f"RESULT: PASS ({len(BEHAVIOURS)} of {len(BEHAVIOURS)} behaviours)"
    if env["KAFKA_ENABLE_IDEMPOTENCE"] == "false":
        assert "idempotence:  OFF (KAFKA_ENABLE_IDEMPOTENCE=false" in out
    assert "deleted the 22 topics it created" in out
    assert [t for t in asyncio.run(_topics(kafka_bootstrap)) if t.startswith(prefix + ".")] == []

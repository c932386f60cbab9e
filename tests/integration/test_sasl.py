"""SCRAM for real: the bridge authenticates to Kafka with SCRAM-SHA-256/512, or is kept out.

The pinned Tansu does not complete SCRAM (users made with ``tansu user create`` are
reported unknown), so devtools/sasl_front.py answers the SASL exchange with a real
RFC 5802/7677 server (scramp) in front of a plaintext Tansu that advertises the
front's port, and pipes authenticated connections through. The bridge's SCRAM client
(aiokafka) and the independent reader's (librdkafka) both do the real exchange.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import orjson
import pytest

from devtools.broker import free_port, provision, start_broker
from devtools.sasl_front import ScramFront
from tests.support.events import ALTINN_CONTENT_TYPE, VALID
from tests.support.kafka import records_with_ce_id
from tests.support.logs import LOG_DIR
from tests.support.settings import make_settings
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.integration

USER, PASSWORD = "altinn-bridge", "scram-pw-" + "q" * 16
TEMPLATE = orjson.loads(VALID[5].read_bytes())  # correspondencepublished


def _sasl_env(mechanism: str, password: str = PASSWORD) -> dict[str, str]:
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": mechanism,
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": password,
    }


@pytest.fixture(params=["SCRAM-SHA-256", "SCRAM-SHA-512"])
def scram_broker(request) -> Iterator[ScramFront]:
    front_port = free_port()
    broker = start_broker(LOG_DIR, advertised_port=front_port)
    front = ScramFront(broker.port, {USER: PASSWORD}, mechanism=request.param, port=front_port)
    front.start()
    try:
        settings = make_settings(BRIDGE_DEDUPE="kafka", **_sasl_env(request.param))
        asyncio.run(provision(f"127.0.0.1:{front_port}", settings))
        yield front
    finally:
        front.stop()
        broker.stop()


async def test_bridge_publishes_after_scram_authentication(scram_broker, start_bridge, http):
    bootstrap = f"127.0.0.1:{scram_broker.port}"
    bridge = start_bridge(bootstrap, **_sasl_env(scram_broker.mechanism))
    await wait_for_status(http, bridge.url + "/readyz", 200, timeout_s=30)

    event = {**TEMPLATE, "id": str(uuid.uuid4())}
    async with http.post(
        bridge.url + "/api/v1/events", data=orjson.dumps(event), headers={"Content-Type": ALTINN_CONTENT_TYPE}
    ) as response:
        assert response.status == 200
        assert (await response.json())["outcome"] == "published"

    reader = {
        "security.protocol": "sasl_plaintext",
        "sasl.mechanism": scram_broker.mechanism,
        "sasl.username": USER,
        "sasl.password": PASSWORD,
    }
    assert records_with_ce_id(
        bootstrap, ["altinn.correspondence.correspondencepublished"], event["id"], extra=reader
    )
    assert bridge.terminate() == 0
    assert USER in scram_broker.authenticated
    assert PASSWORD not in bridge.log()


async def test_wrong_password_keeps_the_bridge_out(scram_broker, start_bridge, http):
    wrong = "not-the-" + PASSWORD
    admitted_before = len(scram_broker.authenticated)
    bridge = start_bridge(
        f"127.0.0.1:{scram_broker.port}",
        BRIDGE_PUBLISH_TIMEOUT_S="2",
        **_sasl_env(scram_broker.mechanism, password=wrong),
    )
    await wait_for_status(http, bridge.url + "/healthz", 200)
    await asyncio.sleep(3)
    async with http.get(bridge.url + "/readyz") as response:
        assert response.status == 503
    assert bridge.terminate() == 0
    assert scram_broker.refused >= 1
    assert len(scram_broker.authenticated) == admitted_before  # the bridge never got in
    log = bridge.log()
    assert "SaslAuthenticationFailed" in log or "invalid-proof" in log
    assert wrong not in log

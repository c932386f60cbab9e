"""The Kafka-protocol broker of the tests: Tansu, started by devtools/broker.py (as ``make run`` does).

Fixtures only: a broker starts when a test asks for one, never at import or session start.
The session broker lives in memory, unless ``BRIDGE_TEST_KAFKA_BOOTSTRAP`` points the
suite at an existing Kafka; tests that stop, pause or kill a broker get one of their own.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

from bridge.routing import Router
from devtools.broker import Broker, S3Server, free_port, provision, start_broker
from tests.support.logs import LOG_DIR
from tests.support.settings import make_settings

EXTERNAL_KAFKA_ENV = "BRIDGE_TEST_KAFKA_BOOTSTRAP"
#: The settings the bridge processes run with (dedupe in Kafka, the production default).
BRIDGE_SETTINGS = make_settings(BRIDGE_DEDUPE="kafka")
#: The event topics (what consumers read); ``provision`` also creates the dedupe state topic.
DEFAULT_TOPICS = Router(BRIDGE_SETTINGS.topics).all_topics()
DEDUPE_TOPIC = BRIDGE_SETTINGS.dedupe.topic


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap of the session's broker, with the default topics created."""
    external = os.environ.get(EXTERNAL_KAFKA_ENV)
    if external:
        asyncio.run(provision(external, BRIDGE_SETTINGS))
        yield external
        return
    broker = start_broker(LOG_DIR)
    try:
        asyncio.run(provision(broker.bootstrap, BRIDGE_SETTINGS))
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A memory broker for one test that stops, pauses or kills it."""
    broker = start_broker(LOG_DIR)
    try:
        asyncio.run(provision(broker.bootstrap, BRIDGE_SETTINGS))
        yield broker
    finally:
        if broker.process is not None and broker.process.poll() is None:
            os.killpg(broker.process.pid, signal.SIGCONT)
        broker.stop()


@pytest.fixture
def durable_broker() -> Iterator[Broker]:
    """A broker on local S3 storage: what it acknowledged survives SIGKILL."""
    s3 = S3Server(free_port(), LOG_DIR / "moto.log")
    s3.start()
    try:
        broker = start_broker(LOG_DIR, storage="s3://tansu/", env=s3.broker_env())
        try:
            asyncio.run(provision(broker.bootstrap, BRIDGE_SETTINGS))
            yield broker
        finally:
            broker.stop()
    finally:
        s3.stop()

"""``altinn-bridge doctor`` as a user runs it, against a real broker and the fake Altinn.

Each broken case is built for real: topics made (or not) on Tansu with the wrong
configuration, a SCRAM front refusing a wrong password, a TLS front whose certificate
the bridge does not trust, subscriptions in the fake Altinn. What is asserted is what
the user sees: the exit code and the row naming the topic and the setting.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import trustme

from bridge.config import Settings
from bridge.routing import Router, state_topic_config, topics_to_provision
from devtools.broker import create_topics, free_port, provision, start_broker
from devtools.fake_altinn import FakeAltinn
from devtools.sasl_front import ScramFront
from devtools.show_topic import read_topics
from devtools.tls_proxy import TlsProxy
from tests.support.altinn import RESOURCE
from tests.support.bridge_process import StartBridge
from tests.support.logs import LOG_DIR
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.integration

BRIDGE_TOKEN = "doctor-path-token-" + "d" * 20
ROTATED_TOKEN = "doctor-rotated-token-" + "r" * 20


def doctor(env: dict[str, str], *args: str) -> tuple[int, str]:
    """``python -m bridge doctor`` with exactly ``env`` (and PATH); exit code and stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "doctor", *args],
        env={"PATH": os.environ["PATH"], "KAFKA_ENABLE_IDEMPOTENCE": "false", "BRIDGE_AUTH": "none", **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert not result.stderr.strip() or result.returncode == 2, result.stderr
    return result.returncode, result.stdout


def rows(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    """Exit code and the ``--json`` rows by check name."""
    code, out = doctor(env, "--json")
    document = orjson.loads(out)
    assert document["ok"] is (code == 0)
    return code, {row["check"]: row for row in document["rows"]}


def fresh_env(bootstrap: str, **env: str) -> dict[str, str]:
    """Settings in a topic prefix (and consumer group) of their own, so each test's topics are its own."""
    unique = uuid.uuid4().hex[:8]
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "BRIDGE_TOPIC_PREFIX": f"doctor.{unique}",
        "KAFKA_CLIENT_ID": f"doctor-{unique}",
        **env,
    }


def topics_of(env: dict[str, str]) -> tuple[Settings, list[str]]:
    settings = Settings.from_env({"KAFKA_ENABLE_IDEMPOTENCE": "false", "BRIDGE_AUTH": "none", **env})
    return settings, topics_to_provision(settings)


# --- Kafka on Tansu ----------------------------------------------------------------


def test_a_provisioned_broker_passes(kafka_bootstrap: str) -> None:
    # What `make run` does: devtools.broker.provision() on Tansu, idempotence off.
    env = fresh_env(kafka_bootstrap)
    settings, _ = topics_of(env)
    asyncio.run(provision(kafka_bootstrap, settings))
    code, out = doctor(env)
    assert code == 0, out
    assert "\nfail " not in out
    assert out.splitlines()[-1].endswith("0 fail, 6 skipped")
    assert f"ok       kafka.access             wrote a marker to {settings.dedupe.topic}" in out
    # Tansu on one broker: replication 1 is a warning, not a failure; idempotence off is said.
    assert "warn     kafka.replication" in out
    assert "warn     kafka.idempotence        KAFKA_ENABLE_IDEMPOTENCE=false" in out


async def test_the_marker_is_a_tombstone_in_the_state_topic_that_the_bridge_loads_past(
    kafka_bootstrap: str, start_bridge: StartBridge, http: aiohttp.ClientSession
) -> None:
    env = fresh_env(kafka_bootstrap)
    settings, _ = topics_of(env)
    await provision(kafka_bootstrap, settings)
    code, out = await asyncio.to_thread(doctor, env)
    assert code == 0, out
    state = await asyncio.to_thread(read_topics, kafka_bootstrap, [settings.dedupe.topic])
    assert [(r["key"], r["value"], r["headers"]) for r in state] == [
        (b"altinn-bridge-doctor", None, {"altinn-bridge-doctor": b"marker"})
    ]
    # No event topic was written to.
    assert await asyncio.to_thread(read_topics, kafka_bootstrap, Router(settings.topics).all_topics()) == []
    bridge = start_bridge(kafka_bootstrap, BRIDGE_DEDUPE="kafka", **env)
    await wait_for_status(http, bridge.url + "/readyz", 200, timeout_s=30)
    assert bridge.terminate() == 0
    assert "unreadable dedupe state record" not in bridge.log()


def test_idempotence_on_against_a_broker_without_it_fails_naming_the_setting(kafka_bootstrap: str) -> None:
    code, found = rows({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_ENABLE_IDEMPOTENCE": "true"})
    assert code == 1
    row = found["kafka.idempotence"]
    assert row["status"] == "fail"
    assert "KAFKA_ENABLE_IDEMPOTENCE=true" in row["detail"]
    assert "InitProducerId" in row["detail"]
    assert "KAFKA_ENABLE_IDEMPOTENCE=false" in row["fix"]
    # The marker is still written (without idempotence): access is checked whatever this row says.
    assert found["kafka.access"]["status"] == "ok"


def test_a_missing_topic_is_named(kafka_bootstrap: str) -> None:
    env = fresh_env(kafka_bootstrap)
    settings, topics = topics_of(env)
    missing = f"{settings.topics.prefix}.correspondencepublished"
    configs = {settings.dedupe.topic: state_topic_config(settings.dedupe)}
    asyncio.run(create_topics(kafka_bootstrap, [t for t in topics if t != missing], 1, configs))
    code, found = rows(env)
    assert code == 1
    row = found["kafka.topics"]
    assert row["status"] == "fail"
    assert row["detail"] == f"missing 1 of {len(topics)}: {missing}"
    assert "altinn-bridge topics" in row["fix"]
    assert [name for name, r in found.items() if r["status"] == "fail"] == ["kafka.topics"]


def test_a_state_topic_that_only_deletes_is_named_with_its_setting(kafka_bootstrap: str) -> None:
    env = fresh_env(kafka_bootstrap)
    settings, topics = topics_of(env)
    state = settings.dedupe.topic
    configs = {state: {"cleanup.policy": "delete", "retention.ms": "3600000"}}
    asyncio.run(create_topics(kafka_bootstrap, topics, 1, configs))
    code, out = doctor(env)
    assert code == 1
    assert f"fail     kafka.state-topic        {state}: cleanup.policy=delete, needs compact,delete" in out
    # An hour is shorter than the 48 h window: that is named too, with the variable.
    assert "retention.ms=3600000 is not longer than BRIDGE_DEDUPE_WINDOW_S=172800 s" in out
    assert (
        f"--entity-name {state} --add-config 'cleanup.policy=[compact,delete],retention.ms=259200000'" in out
    )


def reconciling_env(kafka_bootstrap: str, altinn_env: dict[str, str]) -> dict[str, str]:
    """A fresh prefix with continuous reconciling on (the cursor topic and the reconciler's group)."""
    return fresh_env(
        kafka_bootstrap,
        BRIDGE_RECONCILE="on",
        BRIDGE_RECONCILE_RESOURCE=RESOURCE,
        BRIDGE_RECONCILE_SESSION_TIMEOUT_S="3",
        **altinn_env,
    )


def test_a_cursor_topic_with_three_partitions_is_named(
    kafka_bootstrap: str, altinn_env: dict[str, str]
) -> None:
    env = reconciling_env(kafka_bootstrap, altinn_env)
    settings, topics = topics_of(env)
    cursor = settings.reconcile.cursor_topic
    configs = {
        settings.dedupe.topic: state_topic_config(settings.dedupe),
        cursor: {"cleanup.policy": "compact"},
    }
    asyncio.run(create_topics(kafka_bootstrap, topics, 3, configs))
    code, found = rows(env)
    assert code == 1
    row = found["kafka.cursor-topic"]
    assert row["status"] == "fail"
    assert row["detail"].startswith(f"{cursor}: 3 partitions, needs 1")
    assert "re-create" in row["fix"]
    # The group is still joinable: this is the one Kafka failure.
    assert found["kafka.reconciler-group"]["status"] == "ok"
    assert [n for n, r in found.items() if r["status"] == "fail" and n.startswith("kafka.")] == [
        "kafka.cursor-topic"
    ]


def test_a_compacted_one_partition_cursor_topic_and_its_group_pass(
    kafka_bootstrap: str, altinn_env: dict[str, str]
) -> None:
    env = reconciling_env(kafka_bootstrap, altinn_env)
    settings, _ = topics_of(env)
    asyncio.run(provision(kafka_bootstrap, settings))
    _, found = rows(env)
    assert found["kafka.cursor-topic"]["status"] == "ok"
    group = found["kafka.reconciler-group"]
    assert group["status"] == "ok"
    assert group["detail"].startswith(f"joined consumer group {env['KAFKA_CLIENT_ID']}-reconciler")


def test_an_unreachable_broker_is_named_as_such() -> None:
    port = free_port()
    code, out = doctor({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert code == 1
    assert f"fail     kafka.connect            127.0.0.1:{port}: unreachable: connection refused" in out
    assert "skipped  kafka.topics             Kafka could not be reached (kafka.connect)" in out


def test_advertised_brokers_out_of_reach_are_named() -> None:
    # The bootstrap answers, but tells clients to use a port nothing listens on: every request after
    # the first would fail. A classic of brokers behind a port-forward or a load balancer.
    elsewhere = free_port()
    broker = start_broker(LOG_DIR, advertised_port=elsewhere)
    try:
        code, found = rows({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap})
    finally:
        broker.stop()
    assert code == 1
    row = found["kafka.connect"]
    assert row["status"] == "fail"
    assert row["detail"] == (
        f"{broker.bootstrap} answered, but the cluster advertises brokers this machine cannot reach: "
        f"127.0.0.1:{elsewhere} (unreachable: connection refused)"
    )
    assert "advertised.listeners" in row["fix"]


def test_a_configuration_error_exits_2() -> None:
    code, _ = doctor({"KAFKA_BOOTSTRAP_SERVERS": "no-port-here"})
    assert code == 2


# --- SASL and TLS fronts ---------------------------------------------------------

USER, PASSWORD = "altinn-bridge", "scram-pw-" + "p" * 16


@pytest.fixture
def scram_bootstrap() -> Iterator[str]:
    front_port = free_port()
    broker = start_broker(LOG_DIR, advertised_port=front_port)
    front = ScramFront(broker.port, {USER: PASSWORD}, mechanism="SCRAM-SHA-256", port=front_port)
    front.start()
    try:
        yield f"127.0.0.1:{front_port}"
    finally:
        front.stop()
        broker.stop()


def test_a_wrong_sasl_password_is_named_and_never_printed(scram_bootstrap: str) -> None:
    wrong = "not-the-" + PASSWORD
    sasl = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": USER,
    }
    code, out = doctor({"KAFKA_BOOTSTRAP_SERVERS": scram_bootstrap, **sasl, "KAFKA_SASL_PASSWORD": wrong})
    assert code == 1
    assert (
        f"fail     kafka.connect            {scram_bootstrap}: SASL login refused (SCRAM-SHA-256, user "
        f"'{USER}')" in out
    )
    assert "KAFKA_SASL_PASSWORD" in out
    assert wrong not in out
    # The right password gets in (and then finds no topics: this broker has none).
    code, found = rows({"KAFKA_BOOTSTRAP_SERVERS": scram_bootstrap, **sasl, "KAFKA_SASL_PASSWORD": PASSWORD})
    assert found["kafka.connect"]["status"] == "ok"
    assert found["kafka.topics"]["status"] == "fail"


@pytest.fixture
def tls_bootstrap(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A TLS front with a certificate from its own CA; the CA's file."""
    ca = trustme.CA()
    proxy_port = free_port()
    broker = start_broker(LOG_DIR, advertised_port=proxy_port)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    proxy = TlsProxy(context, broker.port, proxy_port)
    proxy.start()
    ca_file = tmp_path / "broker-ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    try:
        yield f"127.0.0.1:{proxy_port}", ca_file
    finally:
        proxy.stop()
        broker.stop()


def test_a_broker_certificate_from_another_ca_is_named(
    tls_bootstrap: tuple[str, Path], tmp_path: Path
) -> None:
    bootstrap, right_ca = tls_bootstrap
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(other_ca)
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_SECURITY_PROTOCOL": "SSL"}
    code, out = doctor({**env, "KAFKA_SSL_CA_FILE": str(other_ca)})
    assert code == 1
    assert (
        f"fail     kafka.connect            {bootstrap}: the broker's TLS certificate was not accepted" in out
    )
    assert "KAFKA_SSL_CA_FILE" in out
    # With the CA that signed it, the same front is accepted.
    _, found = rows({**env, "KAFKA_SSL_CA_FILE": str(right_ca)})
    assert found["kafka.connect"] == {
        "check": "kafka.connect",
        "status": "ok",
        "detail": f"{bootstrap}: connected (SSL); brokers advertised: {bootstrap}",
        "fix": "",
    }


# --- the fake Altinn -------------------------------------------------------------


def subscribe(fake: FakeAltinn, endpoint: str, *, validated: bool) -> int:
    """A subscription as Altinn stores it after a create (and, validated, after the endpoint answered)."""
    number = len(fake.subscriptions) + 1
    fake.subscriptions[number] = {
        "id": number,
        "endPoint": endpoint,
        "resourceFilter": RESOURCE,
        "subjectFilter": None,
        "typeFilter": None,
        "includeSubunits": False,
        "validated": validated,
    }
    return number


def altinn_bridge_env(kafka_bootstrap: str, altinn_env: dict[str, str]) -> dict[str, str]:
    """A production-like bridge on the session broker's default (provisioned) topics, pointed at the fakes."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "BRIDGE_AUTH": "token",
        "BRIDGE_AUTH_TOKENS": BRIDGE_TOKEN,
        "BRIDGE_FILTER_RESOURCES": RESOURCE,
        **altinn_env,
    }


def test_a_validated_subscription_to_a_configured_token_passes(
    kafka_bootstrap: str, altinn_env: dict[str, str], fake: FakeAltinn
) -> None:
    subscribe(fake, f"https://bridge.example.org/api/v1/events/{BRIDGE_TOKEN}", validated=True)
    code, found = rows(altinn_bridge_env(kafka_bootstrap, altinn_env))
    assert code == 0, found
    assert found["altinn.token"]["status"] == "ok"
    assert "altinn:events.subscribe" in found["altinn.token"]["detail"]
    assert found["altinn.subscriptions"]["status"] == "ok"
    assert found["altinn.pull"]["status"] == "ok"
    assert any(r.path == "/events/api/v1/events" for r in fake.received)


def test_an_unvalidated_subscription_fails(
    kafka_bootstrap: str, altinn_env: dict[str, str], fake: FakeAltinn
) -> None:
    number = subscribe(fake, f"https://bridge.example.org/api/v1/events/{BRIDGE_TOKEN}", validated=False)
    code, out = doctor(altinn_bridge_env(kafka_bootstrap, altinn_env))
    assert code == 1
    assert (
        f"fail     altinn.subscriptions     subscription {number} (every type of {RESOURCE}) is not "
        "validated: Altinn pushes nothing to it" in out
    )
    assert BRIDGE_TOKEN not in out
    assert not any(c in out for c in fake.credentials_seen)


def test_a_subscription_whose_endpoint_token_is_not_configured_fails(
    kafka_bootstrap: str, altinn_env: dict[str, str], fake: FakeAltinn
) -> None:
    from bridge.auth import fingerprint  # noqa: PLC0415

    number = subscribe(fake, f"https://bridge.example.org/api/v1/events/{ROTATED_TOKEN}", validated=True)
    code, found = rows(altinn_bridge_env(kafka_bootstrap, altinn_env))
    assert code == 1
    row = found["altinn.subscriptions"]
    assert row["status"] == "fail"
    assert row["detail"] == (
        f"subscription {number} (every type of {RESOURCE}): endpoint token "
        f"sha256:{fingerprint(ROTATED_TOKEN)} is not one of BRIDGE_AUTH_TOKENS "
        f"(fingerprints {fingerprint(BRIDGE_TOKEN)}): every push would be refused"
    )
    assert "BRIDGE_AUTH_TOKENS" in row["fix"]
    text = orjson.dumps(found).decode()
    assert ROTATED_TOKEN not in text
    assert BRIDGE_TOKEN not in text


def test_no_subscription_for_the_configured_resource_fails(
    kafka_bootstrap: str, altinn_env: dict[str, str]
) -> None:
    code, found = rows(altinn_bridge_env(kafka_bootstrap, altinn_env))
    assert code == 1
    assert found["altinn.subscriptions"]["detail"] == f"no subscription for {RESOURCE}"

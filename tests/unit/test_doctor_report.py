"""``altinn-bridge doctor``'s rows without a broker: the topic rules, the certificate, the rendering.

The checks that talk to Kafka and Altinn are tested for real in tests/integration/test_doctor.py;
these are the decisions over what a broker reported, and what the user reads.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest
import trustme

from bridge.cli import main
from bridge.config import Settings
from bridge.doctor import check_ingress_certificate
from bridge.doctor_kafka import _Cluster, check_cursor_topic, check_replication, check_state_topic
from bridge.doctor_report import Status, exit_code, fail, ok, render_json, render_text, skipped, warn
from devtools.conformance import precreate_instructions, reader_config

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "BRIDGE_AUTH": "none"}


def settings(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def cluster(topic: str, config: dict[str, str] | None, *, partitions: int = 3, rf: int = 3) -> _Cluster:
    found = _Cluster(existing={topic}, partitions={topic: partitions}, replication={topic: rf})
    if config is not None:
        found.configs[topic] = config
    return found


STATE = "altinn.correspondence.dedupe"
CURSOR = "altinn.correspondence.reconcile-cursor"


@pytest.mark.parametrize(
    ("config", "status", "says"),
    [
        ({"cleanup.policy": "compact,delete", "retention.ms": "259200000"}, Status.OK, "compact,delete"),
        ({"cleanup.policy": "delete,compact", "retention.ms": "259200000"}, Status.OK, "delete,compact"),
        ({"cleanup.policy": "compact"}, Status.FAIL, "compaction alone keeps every key for ever"),
        ({"cleanup.policy": "delete"}, Status.FAIL, "without compaction a restart reads every record"),
        (
            {"cleanup.policy": "compact,delete", "retention.ms": "172800000"},
            Status.FAIL,
            "retention.ms=172800000 is not longer than BRIDGE_DEDUPE_WINDOW_S=172800 s",
        ),
        ({"cleanup.policy": "compact,delete", "retention.ms": "-1"}, Status.OK, "retention.ms=-1"),
        (None, Status.WARN, "did not report its configuration"),
    ],
)
def test_the_state_topic_rule(config: dict[str, str] | None, status: Status, says: str) -> None:
    row = check_state_topic(settings(BRIDGE_DEDUPE="kafka"), cluster(STATE, config))
    assert row.status is status
    assert says in row.detail or says in row.fix
    assert row.detail.startswith(STATE)


def test_the_state_topic_is_skipped_without_kafka_dedupe() -> None:
    row = check_state_topic(settings(BRIDGE_DEDUPE="memory"), cluster(STATE, {}))
    assert (row.status, row.detail) == (Status.SKIPPED, "BRIDGE_DEDUPE=memory: no state topic")


@pytest.mark.parametrize(
    ("partitions", "policy", "status"),
    [(1, "compact", Status.OK), (3, "compact", Status.FAIL), (1, "delete", Status.FAIL)],
)
def test_the_cursor_topic_rule(partitions: int, policy: str, status: Status) -> None:
    env = {"BRIDGE_RECONCILE": "on", "BRIDGE_RECONCILE_RESOURCE": "urn:altinn:resource:r"}
    reconciling = Settings.from_env(
        {
            **BASE,
            **env,
            "MASKINPORTEN_CLIENT_ID": "c",
            "MASKINPORTEN_KEY_ID": "k",
            "MASKINPORTEN_PRIVATE_KEY_FILE": __file__,
        }
    )
    row = check_cursor_topic(reconciling, cluster(CURSOR, {"cleanup.policy": policy}, partitions=partitions))
    assert row.status is status
    assert row.detail.startswith(CURSOR)


@pytest.mark.parametrize(
    ("rf", "isr", "status"),
    [
        (3, "2", Status.OK),
        (1, None, Status.WARN),
        (3, "1", Status.WARN),
        (3, None, Status.WARN),
        (2, "3", Status.FAIL),
    ],
)
def test_replication_and_min_insync_replicas(rf: int, isr: str | None, status: Status) -> None:
    config = {"min.insync.replicas": isr} if isr is not None else {}
    row = check_replication(settings(BRIDGE_DEDUPE="kafka"), cluster(STATE, config, rf=rf))
    assert row.status is status
    if status is Status.FAIL:
        assert (
            row.detail == f"acks=all can never succeed: {STATE} (replication factor 2, min.insync.replicas=3)"
        )


def certificate(tmp_path: Path, *, days: int) -> Path:
    now = dt.datetime.now(dt.UTC)
    leaf = trustme.CA().issue_cert("bridge.example.org", not_after=now + dt.timedelta(days=days))
    path = tmp_path / "tls.crt"
    leaf.cert_chain_pems[0].write_to_path(path)
    key = tmp_path / "tls.key"
    leaf.private_key_pem.write_to_path(key)
    return path


@pytest.mark.parametrize(("days", "status"), [(90, Status.OK), (10, Status.WARN), (-1, Status.FAIL)])
def test_the_ingress_certificate_expiry(tmp_path: Path, days: int, status: Status) -> None:
    cert = certificate(tmp_path, days=days)
    env = {"BRIDGE_TLS_CERT_FILE": str(cert), "BRIDGE_TLS_KEY_FILE": str(tmp_path / "tls.key")}
    row = check_ingress_certificate(settings(**env))
    assert row.status is status
    assert "expires" in row.detail


def test_rendering_and_exit_codes() -> None:
    rows = [
        ok("kafka.connect", "127.0.0.1:9092: connected (PLAINTEXT)"),
        warn("config", "BRIDGE_AUTH=none", "set BRIDGE_AUTH_TOKENS"),
        fail("kafka.topics", "missing 1 of 21: a.b", "create it"),
        skipped("altinn.token", "MASKINPORTEN_* not set"),
    ]
    assert render_text(rows).splitlines() == [
        "ok       kafka.connect  127.0.0.1:9092: connected (PLAINTEXT)",
        "warn     config         BRIDGE_AUTH=none",
        "                        fix: set BRIDGE_AUTH_TOKENS",
        "fail     kafka.topics   missing 1 of 21: a.b",
        "                        fix: create it",
        "skipped  altinn.token   MASKINPORTEN_* not set",
        "doctor: 1 ok, 1 warn, 1 fail, 1 skipped",
    ]
    document = orjson.loads(render_json(rows))
    assert document["ok"] is False
    assert document["summary"] == {"ok": 1, "warn": 1, "fail": 1, "skipped": 1}
    assert (exit_code(rows), exit_code(rows[:2]), exit_code([])) == (1, 0, 0)


def test_doctor_exits_2_on_a_configuration_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"], env={"KAFKA_BOOTSTRAP_SERVERS": "no-port"}) == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err


def test_conformance_tells_exactly_which_topics_to_precreate() -> None:
    prefixed = settings(BRIDGE_TOPIC_PREFIX="conformance.ab12cd34", BRIDGE_DEDUPE="kafka")
    text = precreate_instructions(prefixed, ["conformance.ab12cd34.unknown: TopicAuthorizationFailed"])
    assert "CONFORMANCE_PREFIX=conformance.ab12cd34" in text
    assert (
        "kafka-topics.sh --create --topic conformance.ab12cd34.dedupe --partitions 3 "
        "--config cleanup.policy=compact,delete --config retention.ms=259200000" in text
    )
    assert (
        "kafka-topics.sh --create --topic conformance.ab12cd34.correspondencepublished --partitions 3" in text
    )


def test_conformance_reads_with_the_bridges_security_settings() -> None:
    sasl = settings(
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="u",
        KAFKA_SASL_PASSWORD="p" * 12,
        KAFKA_SSL_CHECK_HOSTNAME="false",
    )
    assert reader_config(sasl.kafka.security) == {
        "security.protocol": "sasl_ssl",
        "ssl.endpoint.identification.algorithm": "none",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p" * 12,
    }

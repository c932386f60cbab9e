"""``altinn-bridge doctor``'s Kafka checks: whether this configuration can do what the bridge does.

Read-only except one record: a marker written to the bridge's own dedupe state
topic (a tombstone, which the state loader skips as it skips compaction's
deletion markers), never to an event topic. Topics are looked up by listing
them, never by asking for them by name: a broker that auto-creates topics would
create a missing topic on a metadata request for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnknownError,
    UnsupportedSaslMechanismError,
    UnsupportedVersionError,
)
from aiokafka.protocol.metadata import MetadataRequest

from bridge.config import DedupeMode, Settings
from bridge.doctor_report import Row, fail, ok, skipped, warn
from bridge.kafka_security import client_options
from bridge.kafka_settings import KafkaSettings
from bridge.leadership import group_id
from bridge.routing import CURSOR_TOPIC_PARTITIONS, state_topic_config, topics_to_provision

#: Bound on one request to Kafka, in milliseconds.
REQUEST_TIMEOUT_MS: Final = 10_000
#: Replication below this (or min.insync.replicas below :data:`MIN_ISR`) is a warning.
MIN_REPLICATION: Final = 3
MIN_ISR: Final = 2
#: The marker's key and header: the state loader skips it (a tombstone), a person can recognise it.
MARKER_KEY: Final = b"altinn-bridge-doctor"
#: Bound on reading the marker back, and on joining the reconcilers' group, in seconds.
READ_BACK_S: Final = 15.0

_TOPICS_FIX = (
    "create it as `altinn-bridge topics` lists it (the bridge creates no topics); the dedupe state topic "
    "with cleanup.policy=compact,delete, the cursor topic with one partition and cleanup.policy=compact"
)


@dataclass(slots=True)
class _Cluster:
    """What the admin client learned once, shared by the checks."""

    existing: set[str]
    #: topic → partition count and replication factor (the smallest of its partitions).
    partitions: dict[str, int] = field(default_factory=dict)
    replication: dict[str, int] = field(default_factory=dict)
    #: topic → its configuration as the broker reports it.
    configs: dict[str, dict[str, str]] = field(default_factory=dict)


async def kafka_rows(settings: Settings) -> list[Row]:
    """Every Kafka check, in order; later ones are skipped when Kafka cannot be reached."""
    kafka = settings.kafka
    connect = await check_connect(kafka)
    rows = [connect]
    if connect.status.value == "fail":
        return rows + [
            skipped(name, "Kafka could not be reached (kafka.connect)")
            for name in ("kafka.idempotence", "kafka.topics", "kafka.access")
        ]
    async with _admin(kafka) as admin:
        cluster = await _describe(admin, settings)
        idempotent = await check_idempotence(kafka)
        rows.append(idempotent)
        rows.append(check_topics(settings, cluster))
        rows.append(check_replication(settings, cluster))
        rows.append(check_state_topic(settings, cluster))
        rows.append(check_cursor_topic(settings, cluster))
        rows.append(await check_access(settings, cluster, idempotence_works=idempotent.status.value == "ok"))
        rows.append(await check_group(settings, cluster, admin))
    return rows


# --- connecting ------------------------------------------------------------


async def check_connect(kafka: KafkaSettings) -> Row:
    """Every bootstrap server, then every broker they advertise, with the configured TLS and SASL.

    A refused login, a bad certificate and an unreachable broker are each named as such;
    so is a cluster whose advertised listeners this machine cannot reach (the bootstrap
    answers, every later request fails).
    """
    protocol = str(kafka.security.protocol)
    reached: list[str] = []
    advertised: dict[str, None] = {}
    problems: list[tuple[str, str, str]] = []
    for server in kafka.bootstrap_servers:
        try:
            advertised.update(dict.fromkeys(await _probe(kafka, server)))
        except Exception as exc:  # noqa: BLE001 - every failure is named below
            problems.append((server, *_connect_problem(exc, kafka)))
        else:
            reached.append(server)
    if not reached:
        detail = "\n".join(f"{server}: {what}" for server, what, _ in problems)
        return fail("kafka.connect", detail, "; ".join(dict.fromkeys(fix for _, _, fix in problems)))
    unreachable = []
    for broker in advertised:
        if broker in reached:
            continue
        try:
            await _probe(kafka, broker)
        except Exception as exc:  # noqa: BLE001 - named below
            unreachable.append(f"{broker} ({_connect_problem(exc, kafka)[0]})")
    if unreachable:
        return fail(
            "kafka.connect",
            f"{', '.join(reached)} answered, but the cluster advertises brokers this machine cannot reach: "
            + ", ".join(unreachable),
            "the brokers' advertised.listeners must name addresses reachable from the bridge's network "
            "(a load balancer or port-forward in front of the bootstrap alone is not enough)",
        )
    detail = f"{', '.join(reached)}: connected ({protocol}); brokers advertised: {', '.join(advertised)}"
    if problems:
        detail = "\n".join([*(f"{server}: {what}" for server, what, _ in problems), detail])
        return warn("kafka.connect", detail, "; ".join(dict.fromkeys(fix for _, _, fix in problems)))
    return ok("kafka.connect", detail)


async def _probe(kafka: KafkaSettings, server: str) -> list[str]:
    """Connect (TLS, SASL) to ``server`` and ask for the cluster's brokers (no topic: nothing is created)."""
    host, _, port = server.rpartition(":")
    conn = await create_conn(
        host,
        int(port),
        client_id=f"{kafka.client_id}-doctor",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        **client_options(kafka.security),
    )
    try:
        response = await conn.send(MetadataRequest([]))
    finally:
        conn.close()
    return [f"{b['host']}:{b['port']}" for b in response.to_object()["brokers"]]


def _connect_problem(exc: BaseException, kafka: KafkaSettings) -> tuple[str, str]:
    """What went wrong connecting, and what to do about it."""
    security = kafka.security
    if isinstance(exc, SaslAuthenticationFailed | UnsupportedSaslMechanismError):
        return (
            f"SASL login refused ({security.sasl_mechanism}, user {security.sasl_username!r}): {exc}",
            (
                "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM against the "
                "cluster's user"
            ),
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the broker's TLS certificate was not accepted: {exc.verify_message}",
            (
                "set KAFKA_SSL_CA_FILE to the CA that signed the brokers' certificates; a name mismatch "
                "means KAFKA_BOOTSTRAP_SERVERS must use a name the certificate carries"
            ),
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS handshake failed: {exc.reason or exc}",
            (
                "check KAFKA_SECURITY_PROTOCOL (SSL/SASL_SSL against a TLS listener) and, for mutual TLS, "
                "KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE"
            ),
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            "unreachable: connection refused",
            "check KAFKA_BOOTSTRAP_SERVERS (host and port) and that the broker is up",
        )
    if isinstance(exc, OSError | TimeoutError | asyncio.TimeoutError):
        return (
            f"unreachable: {type(exc).__name__} {exc}".rstrip(),
            "check KAFKA_BOOTSTRAP_SERVERS, DNS and the network path (firewall, egress policy)",
        )
    return (
        f"connected, but the broker did not answer as Kafka with {security.protocol}: "
        f"{type(exc).__name__} {exc}".rstrip(),
        (
            "check KAFKA_SECURITY_PROTOCOL against the listener (a TLS listener needs SSL or SASL_SSL; a "
            "closed connection after TLS often means the broker wants a client certificate)"
        ),
    )


@contextlib.asynccontextmanager
async def _admin(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=list(kafka.bootstrap_servers),
        client_id=f"{kafka.client_id}-doctor",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        **client_options(kafka.security),
    )
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def _describe(admin: AIOKafkaAdminClient, settings: Settings) -> _Cluster:
    cluster = _Cluster(existing=set(await admin.list_topics()))
    wanted = [t for t in topics_to_provision(settings) if t in cluster.existing]
    if not wanted:
        return cluster
    for topic in await admin.describe_topics(wanted):
        partitions = topic["partitions"]
        cluster.partitions[topic["topic"]] = len(partitions)
        cluster.replication[topic["topic"]] = min((len(p["replicas"]) for p in partitions), default=0)
    resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in wanted]
    with contextlib.suppress(KafkaError):  # not permitted: the checks say "not reported"
        for response in await admin.describe_configs(resources):
            for resource in response.to_object()["resources"]:
                entries = resource["config_entries"]
                cluster.configs[resource["resource_name"]] = {
                    e["config_names"]: e["config_value"] for e in entries if e["config_value"] is not None
                }
    return cluster


# --- what the producer needs -----------------------------------------------


async def check_idempotence(kafka: KafkaSettings) -> Row:
    """The broker answers InitProducerId as the bridge's client asks for it, when idempotence is on."""
    name = "kafka.idempotence"
    if not kafka.enable_idempotence:
        return warn(
            name,
            "KAFKA_ENABLE_IDEMPOTENCE=false: a producer retry after a lost acknowledgement can write an "
            "event twice (consumers should deduplicate on the event's source and id)",
            "set KAFKA_ENABLE_IDEMPOTENCE=true on a broker that supports it (every Kafka since 0.11)",
        )
    producer = AIOKafkaProducer(
        bootstrap_servers=list(kafka.bootstrap_servers),
        client_id=f"{kafka.client_id}-doctor",
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        **client_options(kafka.security),
    )
    try:
        await producer.start()
    except ClusterAuthorizationFailedError:
        return fail(
            name,
            "KAFKA_ENABLE_IDEMPOTENCE=true, but the principal may not initialise an idempotent producer "
            "(ClusterAuthorizationFailed on InitProducerId)",
            "grant the principal IdempotentWrite on the cluster (needed before Kafka 3.0), or set "
            "KAFKA_ENABLE_IDEMPOTENCE=false",
        )
    except (UnknownError, UnsupportedVersionError) as exc:
        return fail(
            name,
            "KAFKA_ENABLE_IDEMPOTENCE=true, but the broker does not support InitProducerId as the bridge's "
            f"client sends it (v0): {type(exc).__name__}. The bridge would never become ready.",
            "set KAFKA_ENABLE_IDEMPOTENCE=false for this broker (duplicates from producer retries are "
            "then possible), or use a broker that supports the idempotent producer",
        )
    except KafkaError as exc:
        return fail(
            name,
            "KAFKA_ENABLE_IDEMPOTENCE=true, but starting an idempotent producer failed: "
            f"{type(exc).__name__}",
            "see the broker's log; or set KAFKA_ENABLE_IDEMPOTENCE=false",
        )
    finally:
        await producer.stop()
    return ok(name, "KAFKA_ENABLE_IDEMPOTENCE=true: the broker granted an idempotent producer id")


# --- topics ------------------------------------------------------------------


def check_topics(settings: Settings, cluster: _Cluster) -> Row:
    """Every topic ``altinn-bridge topics`` lists exists."""
    wanted = topics_to_provision(settings)
    missing = [t for t in wanted if t not in cluster.existing]
    if missing:
        return fail(
            "kafka.topics", f"missing {len(missing)} of {len(wanted)}: {', '.join(missing)}", _TOPICS_FIX
        )
    return ok("kafka.topics", f"all {len(wanted)} topics of `altinn-bridge topics` exist")


def check_replication(settings: Settings, cluster: _Cluster) -> Row:
    """Replication factor and min.insync.replicas make ``acks=all`` mean something."""
    name = "kafka.replication"
    topics = [t for t in topics_to_provision(settings) if t in cluster.replication]
    if not topics:
        return skipped(name, "no topic of `altinn-bridge topics` exists")
    impossible: list[str] = []
    weak: dict[str, list[str]] = {}
    unknown: list[str] = []
    for topic in topics:
        rf = cluster.replication[topic]
        raw = cluster.configs.get(topic, {}).get("min.insync.replicas")
        isr = int(raw) if raw is not None and raw.isdigit() else None
        if isr is not None and isr > rf:
            impossible.append(f"{topic} (replication factor {rf}, min.insync.replicas={isr})")
        elif rf < MIN_REPLICATION or (isr is not None and isr < MIN_ISR):
            shape = f"replication factor {rf}, min.insync.replicas {raw or 'not reported'}"
            weak.setdefault(shape, []).append(topic)
        elif isr is None:
            unknown.append(topic)
    if impossible:
        return fail(
            name,
            "acks=all can never succeed: " + ", ".join(impossible),
            "lower min.insync.replicas to at most the replication factor (2 with replication factor 3)",
        )
    if weak:
        shapes = "\n".join(f"{shape}: {_names(names)}" for shape, names in weak.items())
        return warn(
            name,
            f"an acknowledged event can be lost with one broker (want replication factor {MIN_REPLICATION}, "
            f"min.insync.replicas {MIN_ISR}):\n{shapes}",
            f"use replication factor {MIN_REPLICATION} and min.insync.replicas={MIN_ISR} for production",
        )
    if unknown:
        return warn(
            name,
            "the broker did not report min.insync.replicas of: " + _names(unknown),
            "check it with your Kafka team (the broker default is 1; want 2)",
        )
    return ok(
        name,
        f"{len(topics)} topics: replication factor >= {MIN_REPLICATION}, min.insync.replicas >= {MIN_ISR}",
    )


def _names(topics: list[str]) -> str:
    """A few topic names in full, a long list as a count and the first."""
    few = 3
    if len(topics) <= few:
        return ", ".join(topics)
    return f"{len(topics)} topics ({topics[0]}, …)"


def check_state_topic(settings: Settings, cluster: _Cluster) -> Row:
    """The dedupe state topic: ``cleanup.policy=compact,delete``, retention longer than the window."""
    name = "kafka.state-topic"
    if settings.dedupe.mode is not DedupeMode.KAFKA:
        return skipped(name, f"BRIDGE_DEDUPE={settings.dedupe.mode}: no state topic")
    topic = settings.dedupe.topic
    if topic not in cluster.existing:
        return fail(name, f"{topic} (BRIDGE_DEDUPE_TOPIC) does not exist", _TOPICS_FIX)
    config = cluster.configs.get(topic)
    wanted = state_topic_config(settings.dedupe)
    alter = (
        f"kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config "
        f"'cleanup.policy=[compact,delete],retention.ms={wanted['retention.ms']}'"
    )
    if config is None:
        return warn(name, f"{topic}: the broker did not report its configuration", "check it: " + alter)
    problems = []
    policy = config.get("cleanup.policy", "delete")
    if set(policy.replace(" ", "").split(",")) != {"compact", "delete"}:
        why = (
            "compaction alone keeps every key for ever"
            if policy == "compact"
            else "without compaction a restart reads every record"
        )
        problems.append(f"cleanup.policy={policy}, needs compact,delete ({why})")
    retention = config.get("retention.ms")
    window_ms = settings.dedupe.window_s * 1000
    if retention is not None and retention.lstrip("-").isdigit() and 0 <= int(retention) <= window_ms:
        problems.append(
            f"retention.ms={retention} is not longer than "
            f"BRIDGE_DEDUPE_WINDOW_S={settings.dedupe.window_s:g} s: keys are deleted while still in the "
            "window"
        )
    if problems:
        return fail(name, f"{topic}: " + "; ".join(problems), alter)
    return ok(name, f"{topic}: cleanup.policy={policy}, retention.ms={retention or 'broker default'}")


def check_cursor_topic(settings: Settings, cluster: _Cluster) -> Row:
    """The reconcile cursor topic: one partition, compacted."""
    name = "kafka.cursor-topic"
    if not settings.reconcile.enabled:
        return skipped(name, "BRIDGE_RECONCILE=off: no cursor topic")
    topic = settings.reconcile.cursor_topic
    if topic not in cluster.existing:
        return fail(name, f"{topic} (BRIDGE_RECONCILE_CURSOR_TOPIC) does not exist", _TOPICS_FIX)
    problems, fixes = [], []
    partitions = cluster.partitions.get(topic, 0)
    if partitions != CURSOR_TOPIC_PARTITIONS:
        problems.append(
            f"{partitions} partitions, needs {CURSOR_TOPIC_PARTITIONS}: the reconcilers' group gives "
            "partition 0 to one replica; with more, another replica holding none would still wait"
        )
        fixes.append(
            f"delete and re-create {topic} with 1 partition and cleanup.policy=compact (partitions cannot "
            "be removed; the cursor is re-read from Altinn's oldest event once, dedupe drops what was seen)"
        )
    policy = cluster.configs.get(topic, {}).get("cleanup.policy")
    if policy is not None and "compact" not in policy.split(","):
        problems.append(f"cleanup.policy={policy}, needs compact (the last cursor would be deleted)")
        fixes.append(
            f"kafka-configs.sh --alter --entity-type topics --entity-name {topic} "
            "--add-config cleanup.policy=compact"
        )
    if problems:
        return fail(name, f"{topic}: " + "; ".join(problems), "; ".join(fixes))
    return ok(name, f"{topic}: {partitions} partition, cleanup.policy={policy or 'not reported'}")


# --- access ------------------------------------------------------------------


async def check_access(settings: Settings, cluster: _Cluster, *, idempotence_works: bool) -> Row:
    """The principal may write and read the state topic and read the event topics, as the bridge does.

    One marker record (a tombstone keyed ``altinn-bridge-doctor``) is written to the
    state topic and read back; the event topics are only read.
    """
    name = "kafka.access"
    if settings.dedupe.mode is not DedupeMode.KAFKA:
        return skipped(
            name,
            f"BRIDGE_DEDUPE={settings.dedupe.mode}: doctor writes to no event topic, so writing is not "
            "checked (`make conformance` does, in topics of its own)",
        )
    topic = settings.dedupe.topic
    if topic not in cluster.existing:
        return skipped(name, f"{topic} does not exist (kafka.state-topic)")
    kafka = settings.kafka
    step = f"writing a marker record to {topic}"
    try:
        partition, offset = await _write_marker(
            kafka, topic, idempotent=kafka.enable_idempotence and idempotence_works
        )
        step = f"reading {topic}"
        events = [t for t in topics_to_provision(settings) if t in cluster.partitions and t != topic]
        events = [t for t in events if t != settings.reconcile.cursor_topic]
        if not await _read_back(kafka, TopicPartition(topic, partition), offset):
            return fail(
                name,
                f"the marker written to {topic} (partition {partition}, offset {offset}) was not read back "
                f"within {READ_BACK_S:g} s",
                "check the broker's health and the principal's Read permission on the topic",
            )
        step = "reading the event topics"
        await _fetch_once(kafka, events, cluster)
    except TopicAuthorizationFailedError as exc:
        return fail(
            name,
            f"not permitted: {step} ({type(exc).__name__})",
            f"grant the principal Write and Read on {topic} and Read and Describe on the event topics "
            "(a prefixed ACL on BRIDGE_TOPIC_PREFIX covers them)",
        )
    except (KafkaError, TimeoutError) as exc:
        return fail(name, f"{step} failed: {type(exc).__name__} {exc}".rstrip(), "see the broker's log")
    return ok(
        name,
        f"wrote a marker to {topic} and read it back; read {len(events)} event topics. Writing to event "
        "topics is not tried (`make conformance` does)",
    )


async def _write_marker(kafka: KafkaSettings, topic: str, *, idempotent: bool) -> tuple[int, int]:
    producer = AIOKafkaProducer(
        bootstrap_servers=list(kafka.bootstrap_servers),
        client_id=f"{kafka.client_id}-doctor",
        acks="all",
        enable_idempotence=idempotent,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        **client_options(kafka.security),
    )
    await producer.start()
    try:
        async with asyncio.timeout(READ_BACK_S):
            # A tombstone: the state loader skips it, compaction removes it.
            sent = await producer.send_and_wait(
                topic, key=MARKER_KEY, value=None, headers=[("altinn-bridge-doctor", b"marker")]
            )
    finally:
        await producer.stop()
    return int(sent.partition), int(sent.offset)


def _consumer(kafka: KafkaSettings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=list(kafka.bootstrap_servers),
        client_id=f"{kafka.client_id}-doctor",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        **client_options(kafka.security),
    )


async def _read_back(kafka: KafkaSettings, tp: TopicPartition, offset: int) -> bool:
    consumer = _consumer(kafka)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        async with asyncio.timeout(READ_BACK_S):
            while True:
                batches = await consumer.getmany(tp, timeout_ms=500)
                if any(r.offset == offset and r.key == MARKER_KEY for r in batches.get(tp, [])):
                    return True
    except TimeoutError:
        return False
    finally:
        await consumer.stop()


async def _fetch_once(kafka: KafkaSettings, topics: Sequence[str], cluster: _Cluster) -> None:
    """One fetch from the start of every partition of ``topics``: raises when reading is not permitted."""
    partitions = [TopicPartition(t, p) for t in topics for p in range(cluster.partitions[t])]
    if not partitions:
        return
    consumer = _consumer(kafka)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(READ_BACK_S):
            await consumer.getmany(timeout_ms=500, max_records=1)
    finally:
        await consumer.stop()


async def check_group(settings: Settings, cluster: _Cluster, admin: AIOKafkaAdminClient) -> Row:  # noqa: PLR0911 - one row per outcome
    """The reconcilers' consumer group can be joined (only when nobody is in it: joining moves the cursor)."""
    name = "kafka.reconciler-group"
    if not settings.reconcile.enabled:
        return skipped(name, "BRIDGE_RECONCILE=off: no consumer group")
    kafka = settings.kafka
    group = group_id(kafka)
    topic = settings.reconcile.cursor_topic
    if topic not in cluster.existing:
        return skipped(name, f"{topic} does not exist (kafka.cursor-topic)")
    members = await _members(admin, group)
    if members:
        return ok(
            name,
            f"group {group}: {members} member(s) already (running bridges); not joined, which would move "
            "the cursor between them",
        )
    session_ms = int(settings.reconcile.session_timeout_s * 1000)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=list(kafka.bootstrap_servers),
        client_id=f"{kafka.client_id}-doctor",
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=max(session_ms // 10, 100),
        rebalance_timeout_ms=session_ms,
        max_poll_interval_ms=max(session_ms, 10_000),
        request_timeout_ms=max(session_ms + 5000, 40_000),
        **client_options(kafka.security),
    )
    fix = (
        f"grant the principal Read on consumer group {group} (KAFKA_CLIENT_ID + '-reconciler') and on "
        f"{topic}; keep BRIDGE_RECONCILE_SESSION_TIMEOUT_S within the broker's "
        "group.min/max.session.timeout.ms"
    )
    try:
        await consumer.start()
        consumer.subscribe([topic])
        async with asyncio.timeout(settings.reconcile.session_timeout_s * 2 + READ_BACK_S):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=300)
                consumer.pause(*consumer.assignment())
    except GroupAuthorizationFailedError:
        return fail(name, f"not permitted to join consumer group {group}", fix)
    except TimeoutError:
        return fail(name, f"joining consumer group {group} did not complete", fix)
    except KafkaError as exc:
        return fail(name, f"joining consumer group {group} failed: {type(exc).__name__} {exc}".rstrip(), fix)
    finally:
        with contextlib.suppress(TimeoutError, KafkaError):
            async with asyncio.timeout(10):
                await consumer.stop()
    return ok(name, f"joined consumer group {group} and was given {topic} partition 0; left it")


async def _members(admin: AIOKafkaAdminClient, group: str) -> int:
    """Members of ``group`` now; 0 when the broker cannot say."""
    try:
        described: Any = await admin.describe_consumer_groups([group])
    except (KafkaError, TimeoutError):
        return 0
    with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
        return sum(len(g["members"]) for response in described for g in response.to_object()["groups"])
    return 0

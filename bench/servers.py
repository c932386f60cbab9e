"""Start the broker and the three kinds of server the bench compares, and read them.

``ceiling``: :mod:`bench.bare_server` (row a); ``naive``: :mod:`bench.naive_server` (row b);
``bridge``: ``python -m bridge serve`` with production settings (rows c and d). Everything binds
to 127.0.0.1 on free ports and is registered with :class:`~bench.procs.Processes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.procs import Processes, Tree, cpu_affinity, listening_sockets, system_busy_s, uses_uvloop, wait_for
from bridge.config import Settings
from devtools.broker import Broker, free_port, provision, start_broker

#: Seconds a server may take to listen and answer ready.
START_TIMEOUT_S = 60.0
#: Consecutive ready answers (each on a new connection, so on any worker) that count as ready.
READY_IN_A_ROW = 5
_HTTP_OK = 200

#: What the bridge rows set. Everything else is the bridge's default.
BRIDGE_SETTINGS = {
    "BRIDGE_AUTH": "token",  # the default, stated: the token travels in the URL path, as from Altinn
    "BRIDGE_DEDUPE": "kafka",  # the default, stated: the production dedupe, state topic included
    # Tansu cannot do the idempotent producer (aiokafka speaks InitProducerId v0 only, Tansu v3+);
    # real Kafka keeps the default true. acks is always "all" in the bridge.
    "KAFKA_ENABLE_IDEMPOTENCE": "false",
    # Only how long stopping takes (the bench stops each server after its row); not measured.
    "BRIDGE_SHUTDOWN_DRAIN_S": "0",
}


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET on a new connection (so SO_REUSEPORT may pick any worker)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - local URL
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


@dataclass
class Server:
    """A running server of one kind, with its process tree and its URLs."""

    kind: str
    workers: int
    port: int
    tree: Tree
    token: str
    #: The bridge's probes-and-metrics listener (BRIDGE_OPS_PORT).
    ops_port: int | None = None

    def __post_init__(self) -> None:
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ops_url = f"http://127.0.0.1:{self.ops_port}" if self.ops_port else None
        #: The bridge's URL shape, the token in the path as Altinn sends it.
        self.events_url = f"{self.base_url}/api/v1/events/{self.token}"

    def counts(self) -> Counter[str]:
        """The bridge's counts from ``/metrics``: ``events.<outcome>``, ``status.<code>``, ``dedupe_entries``.

        Empty for the comparison servers, which have no metrics.
        """
        counts: Counter[str] = Counter()
        status, body = http_get(self.base_url + "/metrics", 10.0) if self.kind == "bridge" else (0, b"")
        if status != _HTTP_OK:
            return counts
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "altinn_bridge_events_total":
                    counts["events." + labels["outcome"]] += int(sample.value)
                elif sample.name == "altinn_bridge_request_duration_seconds_count" and labels.get(
                    "route", ""
                ).startswith("/api/v1/events"):
                    counts["status." + labels["status"]] += int(sample.value)
                elif sample.name == "altinn_bridge_dedupe_entries":
                    counts["dedupe_entries"] = max(counts["dedupe_entries"], int(sample.value))
        return counts


@dataclass(frozen=True)
class Usage:
    """CPU seconds used during ``wall_s`` seconds, by whom."""

    wall_s: float
    server_s: float
    broker_s: float
    load_s: float
    other_s: float

    def cores(self, cpu_s: float) -> float:
        """``cpu_s`` as cores kept busy on average."""
        return cpu_s / self.wall_s if self.wall_s else 0.0

    def as_json(self) -> dict[str, float]:
        """Cores used by each, for the JSON file."""
        return {
            f"{who}_cores": round(self.cores(cpu_s), 2)
            for who, cpu_s in (
                ("server", self.server_s),
                ("broker", self.broker_s),
                ("loadgen", self.load_s),
                ("other", self.other_s),
            )
        }


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds at one moment (see :meth:`Running.cpu`)."""

    at: float
    server: float
    broker: float
    machine: float

    def since(self, earlier: Snapshot, load_cpu_s: float) -> Usage:
        """What was used between ``earlier`` and this, given the load generator's CPU seconds."""
        server, broker = self.server - earlier.server, self.broker - earlier.broker
        # Everything else that ran meanwhile: other processes on the machine, the bench itself.
        other = max(0.0, self.machine - earlier.machine - server - broker - load_cpu_s)
        return Usage(self.at - earlier.at, server, broker, load_cpu_s, other)


@dataclass
class Running:
    """One scenario: a server, maybe a broker, and the CPUs the load generator may use."""

    server: Server
    broker: Tree | None
    load_cpus: set[int] | None

    def cpu(self) -> Snapshot:
        """Time and CPU seconds so far of the server, the broker and the whole machine."""
        broker = self.broker.cpu_s() if self.broker else 0.0
        return Snapshot(time.monotonic(), self.server.tree.cpu_s(), broker, system_busy_s())


class Servers:
    """Starts brokers and servers for the bench, logging to ``log_dir``."""

    def __init__(
        self, procs: Processes, log_dir: Path, bridge_env: dict[str, str], loop: str = "auto"
    ) -> None:
        self._procs = procs
        self.log_dir = log_dir
        self._bridge_env = bridge_env
        #: The comparison servers' event loop: by default the bridge's ("uvloop" or "asyncio"),
        #: seen on its first start, so that the ratios compare like with like.
        self.loop: str | None = None if loop == "auto" else loop
        #: The bridge's event loop, seen on its first start.
        self.bridge_loop: str | None = None
        self.token = secrets.token_urlsafe(32)

    @contextlib.contextmanager
    def scenario(
        self, name: str, kind: str, workers: int, cpus: tuple[set[int] | None, set[int] | None]
    ) -> Iterator[Running]:
        """A fresh broker (unless ``ceiling``) and server for one measurement; both stopped after."""
        server_cpus, load_cpus = cpus
        broker: Broker | None = None
        try:
            if kind != "ceiling":
                with cpu_affinity(load_cpus):  # the broker's threads inherit the CPUs it starts on
                    broker = start_broker(self.log_dir)
                self._procs.on_exit(broker.stop)
            server = self._start(name, kind, workers, broker, server_cpus)
            try:
                tree = None
                if broker is not None and broker.process is not None:
                    tree = Tree("tansu", broker.process, broker.log_path)
                yield Running(server, tree, load_cpus)
            finally:
                self._procs.stop(server.tree)
        finally:
            if broker is not None:
                broker.stop()

    def _start(
        self, name: str, kind: str, workers: int, broker: Broker | None, cpus: set[int] | None
    ) -> Server:
        port = free_port()
        ops_port = None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "KAFKA_", "PROMETHEUS_"))}
        if kind == "bridge":
            assert broker is not None  # noqa: S101 - the scenario starts one for the bridge
            ops_port = (
                free_port()
            )  # as deployed (deploy/kubernetes): probes and scrapes on their own listener
            env |= {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "BRIDGE_HTTP_HOST": "127.0.0.1",
                "BRIDGE_HTTP_PORT": str(port),
                "BRIDGE_OPS_HOST": "127.0.0.1",
                "BRIDGE_OPS_PORT": str(ops_port),
                "BRIDGE_AUTH_TOKENS": self.token,
                "BRIDGE_WORKERS": str(workers),
                **BRIDGE_SETTINGS,
                **self._bridge_env,
            }
            asyncio.run(provision(broker.bootstrap, Settings.from_env(env)))
            command = [sys.executable, "-m", "bridge", "serve"]
        else:
            module = "bench.bare_server" if kind == "ceiling" else "bench.naive_server"
            command = [sys.executable, "-m", module, f"--port={port}", f"--workers={workers}"]
            command.append(f"--loop={self.loop or 'asyncio'}")
            if broker is not None:
                command.append(f"--bootstrap={broker.bootstrap}")
        log_path = self.log_dir / f"{name}-{kind}.log"
        log_path.unlink(missing_ok=True)
        tree = self._procs.spawn(name, command, log_path=log_path, env=env, cpus=cpus)
        server = Server(kind, workers, port, tree, self.token, ops_port)
        try:
            self._wait_ready(server)
        except BaseException:
            self._procs.stop(tree)
            raise
        if kind == "bridge" and self.bridge_loop is None:
            self.bridge_loop = "uvloop" if uses_uvloop(tree.pids()) else "asyncio"
            self.loop = self.loop or self.bridge_loop
        return server

    def _wait_ready(self, server: Server) -> None:
        tree, in_a_row = server.tree, [0]

        def listening() -> bool:
            if not tree.alive():
                tail = tree.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{server.kind} exited ({tree.process.returncode}):\n{tail}")
            return listening_sockets(server.port) >= server.workers

        def ready() -> bool:
            status, _ = http_get(server.base_url + ("/readyz" if server.kind == "bridge" else "/healthz"))
            in_a_row[0] = in_a_row[0] + 1 if status == _HTTP_OK else 0
            return in_a_row[0] >= READY_IN_A_ROW

        wait_for(listening, START_TIMEOUT_S, f"{server.kind} listening with {server.workers} worker(s)")
        wait_for(ready, START_TIMEOUT_S, f"{server.kind} ready", interval_s=0.05)

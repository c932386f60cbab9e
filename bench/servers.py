"""Start the broker and the three kinds of server the bench compares, and read them.

- ``ceiling``: :mod:`bench.bare_server` (row a)
- ``naive``: :mod:`bench.naive_server` (row b)
- ``bridge``: ``python -m bridge serve`` with production settings (rows c and d)

Everything binds to 127.0.0.1 on free ports; every process is registered with
:class:`~bench.procs.Processes`, so it is stopped however the bench ends.
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

from bench.procs import (
    Processes,
    Tree,
    cpu_affinity,
    listening_sockets,
    system_busy_s,
    uses_uvloop,
    wait_for,
)
from bridge.config import VARIABLES, Settings
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


def bridge_knows_workers() -> bool:
    """True if this bridge reads ``BRIDGE_WORKERS`` (several processes on one port)."""
    return "BRIDGE_WORKERS" in VARIABLES


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET on a new connection (so SO_REUSEPORT may pick any worker)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - local URL
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


class NotAvailableError(RuntimeError):
    """The server cannot run as asked (e.g. the bridge does not know ``BRIDGE_WORKERS`` yet)."""


@dataclass
class Server:
    """A running server of one kind, with its process tree."""

    kind: str
    workers: int
    port: int
    tree: Tree
    token: str
    #: The bridge's probes-and-metrics listener (BRIDGE_OPS_PORT), when it has one.
    ops_port: int | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str | None:
        """``http://127.0.0.1:OPS_PORT``, or None without an ops listener."""
        return None if self.ops_port is None else f"http://127.0.0.1:{self.ops_port}"

    @property
    def events_url(self) -> str:
        """Where events are posted: the bridge's URL shape, token in the path as Altinn sends it."""
        return f"{self.base_url}/api/v1/events/{self.token}"

    def counts(self) -> Counter[str]:
        """The bridge's own counts from ``/metrics``: ``events.<outcome>``, ``status.<code>``, ...

        Empty for the comparison servers, which have no metrics.
        """
        counts: Counter[str] = Counter()
        if self.kind != "bridge":
            return counts
        status, body = http_get(self.base_url + "/metrics", timeout_s=10.0)
        if status != _HTTP_OK:
            return counts
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == "altinn_bridge_events_total":
                    counts["events." + sample.labels["outcome"]] += int(sample.value)
                elif sample.name == "altinn_bridge_request_duration_seconds_count" and sample.labels.get(
                    "route", ""
                ).startswith("/api/v1/events"):
                    counts["status." + sample.labels["status"]] += int(sample.value)
                elif sample.name == "altinn_bridge_dedupe_entries":
                    counts["dedupe_entries"] = max(counts["dedupe_entries"], int(sample.value))
        return counts


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds at one moment (see :meth:`Running.cpu`)."""

    at: float
    server: float
    broker: float
    machine: float

    def since(self, earlier: Snapshot, load_cpu_s: float) -> Usage:
        """What was used between ``earlier`` and this, given the load generator's CPU seconds."""
        wall = self.at - earlier.at
        server, broker = self.server - earlier.server, self.broker - earlier.broker
        # Everything else that ran meanwhile: other processes on the machine, the bench itself.
        other = max(0.0, self.machine - earlier.machine - server - broker - load_cpu_s)
        return Usage(wall, server, broker, load_cpu_s, other)


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
            "server_cores": round(self.cores(self.server_s), 2),
            "broker_cores": round(self.cores(self.broker_s), 2),
            "loadgen_cores": round(self.cores(self.load_s), 2),
            "other_cores": round(self.cores(self.other_s), 2),
        }


@dataclass
class Running:
    """One scenario: a server, maybe a broker, and the CPUs the load generator may use."""

    server: Server
    broker: Tree | None
    load_cpus: set[int] | None
    server_cpus: set[int] | None

    def cpu(self) -> Snapshot:
        """Time and CPU seconds so far of the server, the broker and the whole machine."""
        return Snapshot(
            time.monotonic(),
            self.server.tree.cpu_s(),
            self.broker.cpu_s() if self.broker else 0.0,
            system_busy_s(),
        )


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
                broker = self._broker(load_cpus)
            server = self._start(name, kind, workers, broker, server_cpus)
            try:
                broker_tree = None
                if broker is not None and broker.process is not None:
                    broker_tree = Tree("tansu", broker.process, broker.log_path)
                yield Running(server, broker_tree, load_cpus, server_cpus)
            finally:
                self._procs.stop(server.tree)
        finally:
            if broker is not None:
                broker.stop()

    def _broker(self, cpus: set[int] | None) -> Broker:
        # The broker's threads inherit the CPUs it is started on.
        with cpu_affinity(cpus):
            broker = start_broker(self.log_dir)
        self._procs.on_exit(broker.stop)
        return broker

    def _start(
        self, name: str, kind: str, workers: int, broker: Broker | None, cpus: set[int] | None
    ) -> Server:
        port = free_port()
        ops_port = None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "KAFKA_", "PROMETHEUS_"))}
        if kind == "bridge":
            # As deployed (deploy/kubernetes): probes and scrapes on their own listener.
            if "BRIDGE_OPS_PORT" in VARIABLES:
                ops_port = free_port()
                env["BRIDGE_OPS_PORT"] = str(ops_port)
                env["BRIDGE_OPS_HOST"] = "127.0.0.1"
            if workers > 1 and not bridge_knows_workers():
                raise NotAvailableError("this bridge has no BRIDGE_WORKERS setting yet")
            assert broker is not None  # noqa: S101 - the scenario starts one for the bridge
            env |= {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "BRIDGE_HTTP_HOST": "127.0.0.1",
                "BRIDGE_HTTP_PORT": str(port),
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
        tree = server.tree

        def listening() -> bool:
            if not tree.alive():
                tail = tree.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{server.kind} exited ({tree.process.returncode}):\n{tail}")
            return listening_sockets(server.port) >= server.workers

        try:
            wait_for(listening, START_TIMEOUT_S, f"{server.kind} listening with {server.workers} worker(s)")
        except RuntimeError:
            if server.workers > 1 and listening_sockets(server.port) == 1:
                raise NotAvailableError(
                    f"asked for {server.workers} workers, one process listens: "
                    "this bridge ignores BRIDGE_WORKERS"
                ) from None
            raise
        path = "/readyz" if server.kind == "bridge" else "/healthz"
        in_a_row = [0]

        def ready() -> bool:
            status, _ = http_get(server.base_url + path)
            in_a_row[0] = in_a_row[0] + 1 if status == _HTTP_OK else 0
            return in_a_row[0] >= READY_IN_A_ROW

        wait_for(ready, START_TIMEOUT_S, f"{server.kind} ready", interval_s=0.05)

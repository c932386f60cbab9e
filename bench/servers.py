"""Start the broker and the three kinds of server the bench compares, and read them.

``ceiling``: :mod:`bench.bare_server` (row a); ``naive``: :mod:`bench.naive_server` (row b);
``bridge``: ``python -m bridge serve`` with production settings (rows c and d). One worker each;
everything binds to 127.0.0.1 on free ports and is registered with :class:`~bench.procs.Processes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.plan import cpus
from bench.procs import Processes, cpu_affinity, cpu_s, system_busy_s
from bridge.config import Settings
from devtools.broker import Broker, free_port, provision, start_broker

#: Seconds a server may take to answer ready.
START_TIMEOUT_S = 60.0
_HTTP_OK = 200
#: The event loop of every server: the bridge runs on uvloop when it is installed (a runtime
#: dependency), so the comparison servers do too, and the ratios compare like with like.
LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"

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
    """Status and body of a GET; 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - local URL
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


@dataclass
class Running:
    """One scenario's server (of one kind, one process), its broker if any, and the load's CPUs."""

    kind: str
    port: int
    process: subprocess.Popen[bytes]
    token: str
    broker_pid: int | None
    load_cpus: set[int] | None
    #: The bridge's window size (``BRIDGE_DEDUPE_MAX_ENTRIES``); 0 for the comparison servers.
    window_cap: int = 0

    def __post_init__(self) -> None:
        self.pid, self.base_url = self.process.pid, f"http://127.0.0.1:{self.port}"
        #: The bridge's URL shape, the token in the path as Altinn sends it.
        self.events_url = f"{self.base_url}/api/v1/events/{self.token}"

    def counts(self) -> Counter[str]:
        """The bridge's ``events.<outcome>`` and ``dedupe_entries`` (``/metrics``); empty for others."""
        counts: Counter[str] = Counter()
        status, body = http_get(self.base_url + "/metrics", 10.0) if self.kind == "bridge" else (0, b"")
        for family in text_string_to_metric_families(body.decode() if status == _HTTP_OK else ""):
            for sample in family.samples:
                if sample.name == "altinn_bridge_events_total":
                    counts["events." + sample.labels["outcome"]] += int(sample.value)
                elif sample.name == "altinn_bridge_dedupe_entries":
                    counts["dedupe_entries"] = max(counts["dedupe_entries"], int(sample.value))
        return counts

    def wait_ready(self, log_path: Path) -> None:
        """Wait until the server answers ready; raise (with its log's end) if it does not."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while http_get(self.base_url + ("/readyz" if self.kind == "bridge" else "/healthz"))[0] != _HTTP_OK:
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.kind} not ready ({self.process.poll()}):\n{tail}")
            time.sleep(0.05)

    def cpu(self) -> tuple[float, float, float, float]:
        """Now: the time, and CPU seconds so far of the server, the broker and the whole machine."""
        broker = cpu_s(self.broker_pid) if self.broker_pid else 0.0
        return time.monotonic(), cpu_s(self.pid), broker, system_busy_s()

    def usage(self, before: tuple[float, float, float, float], load_cpu_s: float) -> dict[str, float]:
        """Seconds and server CPU seconds since ``before``; the cores each kept busy meanwhile.

        ``loadgen``: the load generator (its CPU seconds given); ``other``: the rest of the machine.
        """
        wall, server, broker, machine = (now - then for now, then in zip(self.cpu(), before, strict=True))
        used = {"server": server, "broker": broker, "loadgen": load_cpu_s}
        used["other"] = max(0.0, machine - server - broker - load_cpu_s)
        cores = {f"{who}_cores": round(cpu / wall, 2) if wall else 0.0 for who, cpu in used.items()}
        return {"wall_s": round(wall, 2), "server_cpu_s": round(server, 3), **cores}


class Servers:
    """Starts brokers and servers for the bench, logging to ``log_dir``."""

    def __init__(self, procs: Processes, log_dir: Path, bridge_env: dict[str, str]) -> None:
        self._procs, self.log_dir, self._bridge_env = procs, log_dir, bridge_env
        self.token = secrets.token_urlsafe(32)

    @contextlib.contextmanager
    def scenario(self, name: str, kind: str) -> Iterator[Running]:
        """A fresh broker (unless ``ceiling``) and server for one measurement; both stopped after."""
        broker = None
        if kind != "ceiling":
            with cpu_affinity(cpus()[1]):  # the broker's threads inherit the CPUs it starts on
                broker = start_broker(self.log_dir)
            assert broker.process is not None  # noqa: S101 - it answered
            self._procs.adopt(broker.process)
        try:
            log_path = self.log_dir / f"{name}-{kind}.log"
            run = self._start(kind, broker, log_path)
            try:
                run.wait_ready(log_path)
                yield run
            finally:
                self._procs.stop(run.process)
        finally:
            if broker is not None and broker.process is not None:
                self._procs.stop(broker.process)

    def _start(self, kind: str, broker: Broker | None, log_path: Path) -> Running:
        port, cap, bootstrap = free_port(), 0, broker.bootstrap if broker else ""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "KAFKA_", "PROMETHEUS_"))}
        if kind == "bridge":
            env |= {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "BRIDGE_HTTP_HOST": "127.0.0.1",
                "BRIDGE_HTTP_PORT": str(port),
                # As deployed (deploy/kubernetes): probes and scrapes on their own listener.
                "BRIDGE_OPS_HOST": "127.0.0.1",
                "BRIDGE_OPS_PORT": str(free_port()),
                "BRIDGE_AUTH_TOKENS": self.token,
                **BRIDGE_SETTINGS,
                **self._bridge_env,
            }
            settings = Settings.from_env(env)
            asyncio.run(provision(bootstrap, settings))
            command, cap = [sys.executable, "-m", "bridge", "serve"], settings.dedupe.max_entries
        else:
            module = "bench.bare_server" if kind == "ceiling" else "bench.naive_server"
            command = [sys.executable, "-m", module, f"--port={port}", f"--loop={LOOP}"]
            command += [f"--bootstrap={bootstrap}"] if bootstrap else []
        log_path.unlink(missing_ok=True)
        server_cpus, load_cpus = cpus()
        process = self._procs.spawn(command, log_path=log_path, env=env, cpus=server_cpus)
        broker_pid = broker.process.pid if broker and broker.process else None
        return Running(kind, port, process, self.token, broker_pid, load_cpus, cap)

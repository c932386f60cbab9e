"""The bridge as operators run it: ``python -m bridge serve`` in a subprocess on 127.0.0.1.

Its output goes to the suite's log directory, so its lines are scanned for national
identity numbers too. ``start_bridge`` stops (SIGKILL) whatever a test left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools.broker import free_port
from tests.support.logs import LOG_DIR


@dataclass
class BridgeProcess:
    """``python -m bridge`` on a free port of 127.0.0.1."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return LOG_DIR / f"bridge-{self.port}.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "KAFKA_"))}
        env.update(
            {
                "BRIDGE_HTTP_HOST": "127.0.0.1",
                "BRIDGE_HTTP_PORT": str(self.port),
                "KAFKA_ENABLE_IDEMPOTENCE": "false",  # Tansu cannot (docs/configuration.md)
                "BRIDGE_SHUTDOWN_DRAIN_S": "0",
                "BRIDGE_AUTH": "none",  # tests of authentication set it back
                **self.env,
            }
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bridge", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


#: ``start_bridge(bootstrap, **env)``.
StartBridge = Callable[..., BridgeProcess]


@pytest.fixture
def start_bridge() -> Iterator[StartBridge]:
    """``start_bridge(bootstrap, **env)`` → a started :class:`BridgeProcess`; all are stopped afterwards."""
    started: list[BridgeProcess] = []

    def start(bootstrap: str, **env: str) -> BridgeProcess:
        bridge = BridgeProcess({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, **env})
        bridge.start()
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        if bridge.process is not None and bridge.process.poll() is None:
            bridge.process.kill()
            bridge.process.wait()

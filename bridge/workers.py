"""Several worker processes on one port (SO_REUSEPORT), each with its own producer.

Python runs one event loop on one core; to use more cores the bridge starts N
copies of itself (``altinn-bridge serve --workers N`` or ``BRIDGE_WORKERS``).
The kernel spreads incoming connections over them. This supervisor:

- gives them one metrics directory (prometheus-client's multiprocess mode), so
  ``/metrics`` on any worker reports all of them;
- forwards SIGTERM/SIGINT, so every worker drains as a single bridge would, and
  exits with the worst exit code once all have stopped (bounded by the grace
  period plus a margin);
- stops everything (exit 1) if a worker dies on its own, so Kubernetes restarts
  the pod instead of it running with fewer workers than configured.

Workers share the dedupe window the way replicas do, through the state topic.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from types import FrameType

from bridge.config import Settings
from bridge.logs import get_logger
from bridge.server_settings import METRICS_DIR_ENV, WORKER_OF_ENV

#: Extra time, beyond the shutdown grace period, before workers are killed.
KILL_MARGIN_S = 5.0
_POLL_S = 0.2

_log = get_logger("bridge.workers")


def supervise(settings: Settings, workers: int, environ: Mapping[str, str]) -> int:
    """Run ``workers`` copies of ``altinn-bridge serve`` in ``environ``, until a signal or a worker dies."""
    metrics_dir = tempfile.mkdtemp(prefix="altinn-bridge-metrics-")
    env = {**environ, METRICS_DIR_ENV: metrics_dir, WORKER_OF_ENV: str(os.getpid())}
    stopping: list[int] = []

    def on_signal(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        command = [sys.executable, "-m", "bridge", "serve"]
        processes.extend(subprocess.Popen(command, env=env) for _ in range(workers))  # noqa: S603 - ourselves
        _log.info("workers started", workers=workers, pids=[p.pid for p in processes])
        failed = _wait(processes, stopping)
        return _stop(processes, settings, failed)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _wait(processes: list[subprocess.Popen[bytes]], stopping: list[int]) -> int | None:
    """Until a signal (None) or a worker's exit (its pid)."""
    while not stopping:
        for process in processes:
            if process.poll() is not None:
                _log.error("worker exited; stopping the others", pid=process.pid, code=process.returncode)
                return process.pid
        time.sleep(_POLL_S)
    return None


def _stop(processes: list[subprocess.Popen[bytes]], settings: Settings, failed: int | None) -> int:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + settings.shutdown.grace_s + KILL_MARGIN_S
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _log.error("worker did not stop within the grace period; killing it", pid=process.pid)
            process.kill()
            process.wait()
    codes = [p.returncode for p in processes]
    _log.info("workers stopped", codes=codes)
    if failed is not None:
        return 1
    return max((abs(c) for c in codes), default=0)

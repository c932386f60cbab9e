"""py-spy profiles of the bridge under load (``BENCH_PROFILE=1``), summarised.

py-spy samples the process from outside (``--nonblocking``: never paused, at the price of an
occasional torn stack). Idle samples (the loop waiting in epoll) are left out: percentages are of
the busy time. The raw file (collapsed stacks, ``frame;frame;... count``) is flame-graph input;
the summary lists where the CPU went by area and by function.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.procs import Processes

#: The py-spy version the bench was written against (in the ``bench`` extra).
PYSPY_VERSION = "0.4.3"
#: Samples per second.
RATE_HZ = 100
#: Functions in the summary's top list.
TOP = 25

#: Where a sample's time goes, by the first rule (in this order) that matches any frame of its stack.
#: A log call inside the pipeline counts as logging, a metric inside a publish as metrics, ...
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging (structlog, masking, the log line)", ("structlog/", "bridge/logs.py", "logging/")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("dedupe state write (the 2nd record per event)", ("record_state",)),
    ("dedupe state follow (reading the state topic back)", ("bridge/dedupe_store.py", "aiokafka/consumer/")),
    (
        "Kafka publish (KafkaPublisher: append to the batch, aiokafka send, ack)",
        ("aiokafka/producer/", "bridge/publisher.py"),
    ),
    ("Kafka client I/O (requests and responses)", ("aiokafka/",)),
    (
        "pipeline (parse, validate, filter, dedupe, route)",
        (
            "bridge/pipeline.py",
            "bridge/events.py",
            "bridge/dedupe.py",
            "bridge/window.py",
            "bridge/routing.py",
        ),
    ),
    (
        "HTTP (aiohttp, the bridge's handlers, the request line's bookkeeping, auth)",
        (
            "aiohttp/",
            "bridge/views.py",
            "bridge/middleware.py",
            "bridge/http_log.py",
            "bridge/auth.py",
            "yarl/",
            "multidict/",
        ),
    ),
)
OTHER_AREA = "event loop and the rest (uvloop's C loop, asyncio)"


def find_pyspy() -> str | None:
    """py-spy next to the bench's Python (the venv) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(
    procs: Processes, pid: int, duration_s: float, raw: Path, cpus: set[int] | None
) -> subprocess.Popen[bytes]:
    """Start recording ``pid`` for ``duration_s`` into ``raw``, on ``cpus``."""
    raw.unlink(missing_ok=True)
    command = [find_pyspy() or "py-spy", "record", f"--pid={pid}", f"--rate={RATE_HZ}", "--function"]
    # --nonblocking reads the process without stopping it: blocking sampling slowed the bridge 3x.
    command += [f"--duration={max(1, int(duration_s))}", "--nonblocking", "--format=raw", f"--output={raw}"]
    return procs.spawn(command, log_path=raw.with_suffix(".log"), cpus=cpus)


def _samples(raw: Path) -> list[tuple[list[str], str, int]]:
    """(frames as ``func (file)``, its area, count) of each stack in a py-spy raw file."""
    stacks = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [
            p for p in map(str.strip, stack.split(";")) if p and not p.startswith(("process ", "thread "))
        ]
        if count.isdigit() and frames:
            text = ";".join(frames)
            area = next((a for a, markers in AREAS if any(m in text for m in markers)), OTHER_AREA)
            stacks.append((frames, area, int(count)))
    return stacks


def summarize(raw: Path, cpu_us_per_event: float) -> tuple[str, dict[str, float]]:
    """Where the busy time went (by area, then the top functions) as text, and the us per event by area.

    ``cpu_us_per_event`` is the server CPU per event measured in the same run.
    """
    areas: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for frames, area, count in _samples(raw):
        areas[area] += count
        self_time[frames[-1]] += count
    if not (total := sum(areas.values())):
        return f"no samples in {raw}\n", {}
    us = {area: round(n / total * cpu_us_per_event, 1) for area, n in areas.most_common()}
    lines = [f"{total} busy samples at {RATE_HZ} Hz ({total / RATE_HZ:.1f} s of CPU)", ""]
    lines.append(f"By area (first match from the top; {cpu_us_per_event:.0f} us of server CPU per event):")
    lines += [f"  {100 * n / total:5.1f} %  {us[area]:5.0f} us  {area}" for area, n in areas.most_common()]
    lines += ["", f"Top {TOP} functions by self time:"]
    lines += [f"  {100 * n / total:5.1f} %  {frame}" for frame, n in self_time.most_common(TOP)]
    return "\n".join(lines) + "\n", us

"""py-spy profiles of the bridge under load (``BENCH_PROFILE=1``), summarised.

py-spy samples the process from outside (``--nonblocking``: never paused, at the price of an
occasional torn stack). Idle samples (the loop waiting in epoll) are left out: percentages are of
the busy time. The raw file (collapsed stacks, ``frame;frame;... count``) is flame-graph input;
the summary lists where the CPU went by area, package and function.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path

from bench.procs import Processes, Tree

#: The py-spy version the bench was written against (install it into the venv).
PYSPY_VERSION = "0.4.3"
#: Samples per second.
RATE_HZ = 100
#: Rows in each "top" list of the summary.
TOP = 25
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def find_pyspy() -> str | None:
    """py-spy next to the bench's Python (the venv) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def start(
    procs: Processes, pyspy: str, pid: int, *, duration_s: float, raw: Path, cpus: set[int] | None
) -> Tree:
    """Start recording ``pid`` and its subprocesses (workers) for ``duration_s`` into ``raw``."""
    raw.unlink(missing_ok=True)
    command = [pyspy, "record", f"--pid={pid}", "--subprocesses", f"--rate={RATE_HZ}", "--format=raw"]
    # --nonblocking reads the process without stopping it: blocking sampling slowed the bridge 3x.
    command += [f"--duration={max(1, int(duration_s))}", "--function", "--nonblocking", f"--output={raw}"]
    return procs.spawn("py-spy", command, log_path=raw.with_suffix(".log"), cpus=cpus)


#: Where a sample's time goes, by the first rule (in this order) that matches any frame of its stack.
#: A log call inside the pipeline counts as logging, a metric inside a publish as metrics, ...
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging (structlog, masking, the log line)", ("structlog/", "bridge/logs.py", "logging/")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("dedupe state write (the 2nd record per event)", ("record_state",)),
    ("dedupe state follow (reading the state topic back)", ("bridge/dedupe_store.py", "aiokafka/consumer/")),
    (
        "Kafka publish (KafkaPublisher.publish: aiokafka send, timeout, ack)",
        ("aiokafka/producer/", "KafkaPublisher.publish"),
    ),
    ("Kafka client I/O (requests and responses)", ("aiokafka/",)),
    ("pipeline (parse, validate, filter, dedupe, route)", ("bridge/pipeline.py", "bridge/events.py")),
    (
        "HTTP (aiohttp, the bridge's handlers, middlewares and auth)",
        ("aiohttp/", "bridge/views.py", "bridge/middleware.py", "bridge/auth.py", "yarl/", "multidict/"),
    ),
)
OTHER_AREA = "event loop and the rest (uvloop's C loop, asyncio)"


def area_of(frames: list[tuple[str, str]]) -> str:
    """The :data:`AREAS` name a stack belongs to."""
    text = ";".join(f"{func} ({path})" for func, path in frames)
    for area, markers in AREAS:
        if any(marker in text for marker in markers):
            return area
    return OTHER_AREA


def _samples(raw: Path) -> list[tuple[list[tuple[str, str]], int]]:
    """(frames, count) of each stack in a py-spy raw file, without the process/thread frames."""
    stacks = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        frames = []  # (function, file), outermost first
        for part in filter(None, (p.strip() for p in stack.split(";"))):
            match = _FRAME.match(part)
            frames.append((match["func"], match["file"]) if match else (part, ""))
        # py-spy --subprocesses prefixes the process ("process 123:\"python -m bridge\"").
        frames = [f for f in frames if not f[0].startswith(("process ", "thread "))]
        if frames:
            stacks.append((frames, int(count_text)))
    return stacks


def areas_us(raw: Path, cpu_us_per_event: float) -> dict[str, float]:
    """Microseconds of server CPU per event by :data:`AREAS`, for the JSON file."""
    areas: Counter[str] = Counter()
    for frames, count in _samples(raw):
        areas[area_of(frames)] += count
    total = sum(areas.values())
    return {a: round(n / total * cpu_us_per_event, 1) for a, n in areas.most_common()} if total else {}


def summarize(raw: Path, cpu_us_per_event: float | None = None) -> str:
    """Where the busy time went: by area, by package (self time), top functions by self and inclusive time.

    With ``cpu_us_per_event`` (measured in the same run) each area also gets its share in microseconds.
    """
    self_time: Counter[tuple[str, str]] = Counter()
    areas: Counter[str] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    packages: Counter[str] = Counter()
    total = torn = 0
    for frames, count in _samples(raw):
        total += count
        # --nonblocking reads a stack while it changes: some lack the interpreter's outer frames.
        torn += 0 if frames[0][0] == "_run_module_as_main" else count
        areas[area_of(frames)] += count
        self_time[frames[-1]] += count
        # py-spy prints paths from the package: aiohttp/..., bridge/..., asyncio.py
        path = frames[-1][1]
        packages[path.split("/", 1)[0] if "/" in path else (path.removesuffix(".py") or "?")] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return f"no samples in {raw}\n"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f} %"

    def name(frame: tuple[str, str]) -> str:
        func, path = frame
        return f"{func} ({path})"

    head = (
        f"{total} busy samples at {RATE_HZ} Hz ({total / RATE_HZ:.1f} s of CPU); {pct(torn).strip()} of them "
        "torn (read while changing, outer frames missing; classified by the frames they have)"
    )
    lines = [head, ""]
    per = f"; {cpu_us_per_event:.0f} us of server CPU per event" if cpu_us_per_event else ""
    lines.append(f"By area (first match from the top{per}):")
    for area, n in areas.most_common():
        us = f"{n / total * cpu_us_per_event:5.0f} us  " if cpu_us_per_event else ""
        lines.append(f"  {pct(n)}  {us}{area}")
    lines += ["", "Self time by package:"]
    lines += [f"  {pct(n)}  {pkg}" for pkg, n in packages.most_common()]
    lines += ["", f"Top {TOP} functions by self time:"]
    lines += [f"  {pct(n)}  {name(f)}" for f, n in self_time.most_common(TOP)]
    lines += ["", f"Top {TOP} functions by inclusive time (the function and what it calls):"]
    # Frames in every sample (the interpreter's start, the event loop's run) say nothing.
    below_all = [(f, n) for f, n in inclusive.most_common() if n < total]
    lines += [f"  {pct(n)}  {name(f)}" for f, n in below_all[:TOP]]
    return "\n".join(lines) + "\n"

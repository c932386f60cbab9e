"""The memory the bridge's processes hold, and the container limit to hold it against.

prometheus-client's own process collector is registered only on its global registry (the bridge
uses injected ones) and is not exported at all in multiprocess mode, so with ``--workers N``
nothing said how much memory the pod used. Each serving process samples its resident set size
(``/proc/self/statm``) into a gauge every few seconds; with workers the gauge is a multiprocess
``livesum``: the sum over the pod's live workers, the figure the container's limit applies to.
The supervisor above them serves no metrics (some 30 MB): each of its N workers adds 1/N of the
supervisor's RSS to its own, so the sum covers every bridge process in the container (shared
library pages are still counted once per process).

The limit comes from the process's own memory cgroup (v2 ``memory.max``, v1
``memory.limit_in_bytes``; the lowest along the path up to the mount, which is the container's
own cgroup when the runtime gives the container a cgroup namespace): it needs no
kube-state-metrics or cAdvisor, and a plain Prometheus scraping only the bridge can alert on it.
It is read on every sample, so an in-place resize shows. 0 means no limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Gauge

RESIDENT_METRIC: Final = "altinn_bridge_process_resident_memory_bytes"
LIMIT_METRIC: Final = "altinn_bridge_memory_limit_bytes"
#: Memory grows over minutes, scrapes come every 30 s: a read of two small files every 5 s.
SAMPLE_INTERVAL_S: Final = 5.0
#: cgroup v1 writes "no limit" as the largest page-aligned 63-bit number; anything this large is none.
_V1_UNLIMITED: Final = 1 << 62

_PROC: Final = Path("/proc")
_CGROUP_MOUNT: Final = Path("/sys/fs/cgroup")


def resident_bytes(statm: Path) -> int:
    """Resident set size of the process ``statm`` (``/proc/<pid>/statm``) describes, in bytes."""
    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def supervisor_share(proc: Path, supervisor: int) -> int:
    """The supervisor's RSS divided by the number of its children (the workers)."""
    children = (proc / str(supervisor) / "task" / str(supervisor) / "children").read_text().split()
    return resident_bytes(proc / str(supervisor) / "statm") // max(1, len(children))


def limit_files(proc_cgroup: Path, mount: Path = _CGROUP_MOUNT) -> list[Path]:
    """The memory-limit files of this process's cgroup and of each parent up to ``mount``.

    v1's memory controller wins where both hierarchies are mounted (it is the one that limits).
    Without a cgroup namespace the path in ``/proc/self/cgroup`` may not exist below the mount;
    walking up still ends at the mount itself, which is then the container's cgroup.
    """
    v1_path = v2_path = None
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            v1_path = path
        elif controllers == "":
            v2_path = path
    if v1_path is not None:
        root, name, path = mount / "memory", "memory.limit_in_bytes", v1_path
    elif v2_path is not None:
        root, name, path = mount, "memory.max", v2_path
    else:
        return []
    directory = root / path.strip("/")
    files = []
    while True:
        if (directory / name).is_file():
            files.append(directory / name)
        if directory == root or root not in directory.parents:
            return files
        directory = directory.parent


def limit_bytes(files: list[Path]) -> int:
    """The lowest limit the files set: bytes, or 0 when none of them sets one."""
    limits = []
    for path in files:
        text = path.read_text().strip()
        if text != "max" and int(text) < _V1_UNLIMITED:
            limits.append(int(text))
    return min(limits, default=0)


class ProcessMemory:
    """The two gauges (``RESIDENT_METRIC``, ``LIMIT_METRIC``) on ``registry``, and their sampler."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        supervisor: int | None = None,
        proc: Path = _PROC,
        cgroup_mount: Path = _CGROUP_MOUNT,
    ) -> None:
        """``supervisor``: the pid of the ``--workers`` supervisor this process is a worker of."""
        self.resident = Gauge(
            RESIDENT_METRIC,
            "Resident memory (RSS) of the bridge's processes: with --workers N the sum over the "
            "workers and their supervisor, the figure the container's memory limit applies to.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.limit = Gauge(
            LIMIT_METRIC,
            "The container's memory limit (its cgroup's memory.max); 0 when it has none.",
            registry=registry,
            multiprocess_mode="livemax",  # every worker reads the same cgroup
        )
        self._proc = proc
        self._supervisor = supervisor
        try:
            self._limit_files = limit_files(proc / "self" / "cgroup", cgroup_mount)
        except (OSError, ValueError):  # not Linux, or no cgroup filesystem: no limit to show
            self._limit_files = []

    def sample(self) -> None:
        """Read both figures now; a file that cannot be read leaves its gauge as it was."""
        with contextlib.suppress(OSError, ValueError, IndexError):  # no /proc (macOS): stays 0
            resident = resident_bytes(self._proc / "self" / "statm")
            if self._supervisor is not None:
                with contextlib.suppress(OSError, ValueError, IndexError):  # the supervisor is gone
                    resident += supervisor_share(self._proc, self._supervisor)
            self.resident.set(resident)
        with contextlib.suppress(OSError, ValueError):
            self.limit.set(limit_bytes(self._limit_files))

    async def run(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        """Sample every ``interval_s`` seconds until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(interval_s)

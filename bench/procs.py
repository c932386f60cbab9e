"""The processes the bench starts, and what ``/proc`` says about them.

Every process starts in its own session (so its whole group can be stopped) and is registered
with a :class:`Processes`, which stops all of them on exit — also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

#: Clock ticks per second of the CPU times in ``/proc/<pid>/stat``.
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Seconds a process gets to stop after SIGTERM before SIGKILL.
STOP_TIMEOUT_S = 30.0


def system_busy_s() -> float:
    """CPU seconds every core of the machine has been busy (not idle or waiting for I/O) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@contextlib.contextmanager
def cpu_affinity(cpus: set[int] | None) -> Iterator[None]:
    """Run the block (and whatever it starts: children inherit) on ``cpus``; None = all CPUs."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus if cpus is not None else set(range(os.cpu_count() or 1)))
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, reaped children's too) of ``pid`` so far; 0 once it is gone."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / CLK_TCK
    return 0.0


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of ``pid`` now (or its peak, ``VmHWM``), in MiB; 0 once it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


class Processes:
    """Owns every process the bench starts; stops them all when the block ends."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Self:
        # SIGTERM (a closing terminal, `timeout`) must clean up like Ctrl-C does.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for process in reversed(self._started):
            self.stop(process)

    def spawn(
        self,
        command: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cpus: set[int] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` in its own session on ``cpus``, output to ``log_path``."""
        with log_path.open("ab") as log, cpu_affinity(cpus):
            stdio = {"stdout": log, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL}
            process = subprocess.Popen(list(command), env=env, start_new_session=True, **stdio)  # noqa: S603
        self._started.append(process)
        return process

    def adopt(self, process: subprocess.Popen[bytes]) -> None:
        """Stop ``process`` (started elsewhere in its own session: the broker) with the others."""
        self._started.append(process)

    def stop(self, process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the process, then SIGKILL its whole group if it has not exited in ``timeout_s``."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout_s)
        # Whatever is left of the group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        if process in self._started:
            self._started.remove(process)


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt

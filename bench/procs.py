"""The processes the bench starts, and what ``/proc`` says about them.

Every process starts in its own session (so its whole group can be stopped) and is registered
with a :class:`Processes`, which stops all of them on exit — also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

#: Clock ticks per second of the CPU times in ``/proc/<pid>/stat``.
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Seconds a process gets to stop after SIGTERM before SIGKILL.
STOP_TIMEOUT_S = 30.0


def _stat(pid: int) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` after the command name (``state`` is index 0)."""
    return Path(f"/proc/{pid}/stat").read_text(errors="replace").rsplit(")", 1)[1].split()


def _status(pid: int, field: str) -> str | None:
    """A field of ``/proc/<pid>/status`` (``VmRSS``, ``Cpus_allowed_list``); None if gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return line.split()[1]
    return None


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant (workers, their children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            tree.append(pid)
            todo.extend(children.get(pid, []))
    return tree


def system_busy_s() -> float:
    """CPU seconds every core of the machine has been busy (not idle or waiting for I/O) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def allowed_cpus(pid: int) -> str:
    """The CPUs ``pid`` may run on, as the kernel lists them (``0``, ``0-1``)."""
    return _status(pid, "Cpus_allowed_list") or "?"


def uses_uvloop(pids: Iterable[int]) -> bool:
    """True if any of ``pids`` has uvloop's extension module mapped."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if "uvloop" in Path(f"/proc/{pid}/maps").read_text(errors="replace"):
                return True
    return False


def listening_sockets(port: int) -> int:
    """How many sockets listen on 127.0.0.1:``port`` (one per SO_REUSEPORT worker)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1:4:2] == [f"0100007F:{port:04X}", "0A"])


@contextlib.contextmanager
def cpu_affinity(cpus: set[int] | None) -> Iterator[None]:
    """Run the block (and whatever it starts: children inherit) on ``cpus``; None = all CPUs."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus if cpus is not None else set(range(os.cpu_count() or 1)))
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


@dataclass
class Tree:
    """A started server (or broker): its root process and whatever it forks."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """Pid of the root process."""
        return self.process.pid

    def pids(self) -> list[int]:
        """The root and its live descendants."""
        return process_tree(self.pid)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) of the whole tree so far, reaped children included."""
        ticks = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = _stat(pid)
                ticks += sum(int(f) for f in fields[11 : 15 if pid == self.pid else 13])
        return ticks / CLK_TCK

    def rss_mib(self, field: str = "VmRSS") -> float:
        """Resident memory now (or its peak, ``VmHWM``), summed over the tree, in MiB."""
        return sum(int(_status(pid, field) or 0) for pid in self.pids()) / 1024

    def peak_rss_mib(self) -> float:
        """Peak resident memory (``VmHWM``) of each process, summed over the tree, in MiB."""
        return self.rss_mib("VmHWM")

    def alive(self) -> bool:
        """True while the root process runs."""
        return self.process.poll() is None


class Processes:
    """Owns every process the bench starts; stops them all when the block ends."""

    def __init__(self) -> None:
        self._trees: list[Tree] = []
        self._stoppers: list[Callable[[], None]] = []

    def __enter__(self) -> Self:
        # SIGTERM (a closing terminal, `timeout`) must clean up like Ctrl-C does.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for tree in reversed(list(self._trees)):
            self.stop(tree)
        while self._stoppers:
            with contextlib.suppress(Exception):
                self._stoppers.pop()()

    def spawn(
        self,
        name: str,
        command: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cpus: set[int] | None = None,
        priority: int = 0,
    ) -> Tree:
        """Start ``command`` in its own session on ``cpus``, output to ``log_path``.

        A negative ``priority`` (nice value; needs root) lets a light measuring client run on
        time on a busy core; it is left at 0 where that is not allowed.
        """
        with log_path.open("ab") as log, cpu_affinity(cpus):
            process = subprocess.Popen(  # noqa: S603 - our own commands, no shell
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        if priority:
            with contextlib.suppress(PermissionError):
                os.setpriority(os.PRIO_PROCESS, process.pid, priority)
        tree = Tree(name, process, log_path)
        self._trees.append(tree)
        return tree

    def on_exit(self, stopper: Callable[[], None]) -> None:
        """Also call ``stopper`` (e.g. a broker's ``stop``) when everything stops."""
        self._stoppers.append(stopper)

    def stop(self, tree: Tree, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the root, then SIGKILL the whole group if it has not exited in ``timeout_s``."""
        if tree.alive():
            with contextlib.suppress(ProcessLookupError):
                tree.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                tree.process.wait(timeout_s)
        # Whatever is left of the group (workers of a killed supervisor) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(tree.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            tree.process.wait(5)
        if tree in self._trees:
            self._trees.remove(tree)


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    """Poll ``check`` until it is true; raise naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout_s:g} s")
        time.sleep(interval_s)

"""Resident memory from /proc, the memory limit from the process's cgroup (v1 and v2 trees as files)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bridge.process_memory import LIMIT_METRIC, RESIDENT_METRIC, ProcessMemory, limit_bytes, limit_files

MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
V1_UNLIMITED = "9223372036854771712"


def _vm_rss_bytes() -> int:
    """The kernel's other account of this process's RSS: VmRSS in /proc/self/status."""
    match = re.search(r"^VmRSS:\s+(\d+) kB$", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


def _tree(tmp_path: Path, cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A /proc/self/cgroup with ``cgroup`` and a cgroup mount holding ``files`` (path → content)."""
    proc = tmp_path / "cgroup"
    proc.write_text(cgroup)
    mount = tmp_path / "sys-fs-cgroup"
    for name, content in files.items():
        (mount / name).parent.mkdir(parents=True, exist_ok=True)
        (mount / name).write_text(content + "\n")
    return proc, mount


def _limit(tmp_path: Path, cgroup: str, files: dict[str, str]) -> int:
    return limit_bytes(limit_files(*_tree(tmp_path, cgroup, files)))


def _proc(tmp_path: Path, files: dict[str, str]) -> Path:
    """A /proc holding ``files`` (path below it → content)."""
    proc = tmp_path / "proc"
    for name, content in files.items():
        (proc / name).parent.mkdir(parents=True, exist_ok=True)
        (proc / name).write_text(content)
    return proc


def _statm(resident_pages: int) -> str:
    return f"{resident_pages * 3} {resident_pages} 100 5 0 200 0\n"


def test_resident_memory_is_this_process_rss() -> None:
    registry = CollectorRegistry()
    memory = ProcessMemory(registry)
    ballast = b"\x01" * (64 * MIB)  # written pages: the RSS must hold them
    memory.sample()
    resident = registry.get_sample_value(RESIDENT_METRIC)
    assert resident is not None
    assert abs(resident - _vm_rss_bytes()) < 8 * MIB
    assert resident > 64 * MIB
    del ballast


def test_cgroup_v2_limit_of_a_container_with_its_own_namespace(tmp_path: Path) -> None:
    # What a Kubernetes container sees: "0::/" and its own cgroup at the mount.
    assert _limit(tmp_path, "0::/\n", {"memory.max": str(512 * MIB)}) == 512 * MIB


def test_cgroup_v2_no_limit_is_zero(tmp_path: Path) -> None:
    assert _limit(tmp_path, "0::/\n", {"memory.max": "max"}) == 0


def test_cgroup_v2_lowest_limit_along_the_path_wins(tmp_path: Path) -> None:
    files = {
        "kubepods/memory.max": "max",
        "kubepods/pod1/memory.max": str(300 * MIB),
        "kubepods/pod1/bridge/memory.max": str(512 * MIB),
        "memory.max": "max",
    }
    assert _limit(tmp_path, "0::/kubepods/pod1/bridge\n", files) == 300 * MIB


def test_cgroup_path_missing_below_the_mount_falls_back_to_the_mount(tmp_path: Path) -> None:
    # No cgroup namespace: the host's path is listed, the container's cgroup is mounted at the root.
    assert _limit(tmp_path, "0::/kubepods/pod1/bridge\n", {"memory.max": str(256 * MIB)}) == 256 * MIB


def test_cgroup_v1_memory_controller(tmp_path: Path) -> None:
    cgroup = "9:name=systemd:/\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n"
    files = {
        "memory/memory.limit_in_bytes": V1_UNLIMITED,
        "memory/docker/abc/memory.limit_in_bytes": str(128 * MIB),
        # v2 also mounted (hybrid): the v1 memory controller is the one that limits.
        "memory.max": str(64 * MIB),
    }
    assert _limit(tmp_path, cgroup, files) == 128 * MIB


def test_cgroup_v1_unlimited_is_zero(tmp_path: Path) -> None:
    files = {"memory/memory.limit_in_bytes": V1_UNLIMITED}
    assert _limit(tmp_path, "4:memory:/\n", files) == 0


def test_no_cgroup_filesystem_gives_a_zero_limit_and_still_the_rss(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    proc = _proc(tmp_path, {"self/statm": _statm(1000)})
    ProcessMemory(registry, proc=proc, cgroup_mount=tmp_path / "absent").sample()
    assert registry.get_sample_value(LIMIT_METRIC) == 0
    assert registry.get_sample_value(RESIDENT_METRIC) == 1000 * PAGE


def test_a_worker_adds_its_share_of_the_supervisor(tmp_path: Path) -> None:
    """Three workers each add a third of the supervisor: their sum is every bridge process."""
    proc = _proc(
        tmp_path,
        {"self/statm": _statm(1000), "42/statm": _statm(600), "42/task/42/children": "100 101 102 "},
    )
    registry = CollectorRegistry()
    memory = ProcessMemory(registry, supervisor=42, proc=proc, cgroup_mount=tmp_path)
    memory.sample()
    assert registry.get_sample_value(RESIDENT_METRIC) == (1000 + 200) * PAGE
    # The supervisor gone (the worker is about to be stopped too): its own figure still counts.
    (proc / "42" / "statm").unlink()
    memory.sample()
    assert registry.get_sample_value(RESIDENT_METRIC) == 1000 * PAGE


def test_the_limit_is_read_again_on_every_sample(tmp_path: Path) -> None:
    """An in-place resize of the pod shows on the next sample."""
    _, mount = _tree(tmp_path, "0::/\n", {"memory.max": str(512 * MIB)})
    registry = CollectorRegistry()
    memory = ProcessMemory(registry, proc=_proc(tmp_path, {"self/cgroup": "0::/\n"}), cgroup_mount=mount)
    memory.sample()
    assert registry.get_sample_value(LIMIT_METRIC) == 512 * MIB
    (mount / "memory.max").write_text(f"{768 * MIB}\n")
    memory.sample()
    assert registry.get_sample_value(LIMIT_METRIC) == 768 * MIB


def test_an_unreadable_statm_leaves_the_gauge_and_does_not_raise(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    ProcessMemory(registry, proc=tmp_path / "absent").sample()
    assert registry.get_sample_value(RESIDENT_METRIC) == 0


async def test_run_samples_until_cancelled(tmp_path: Path) -> None:
    _, mount = _tree(tmp_path, "0::/\n", {"memory.max": str(100 * MIB)})
    registry = CollectorRegistry()
    proc = _proc(tmp_path, {"self/cgroup": "0::/\n"})
    task = asyncio.create_task(ProcessMemory(registry, proc=proc, cgroup_mount=mount).run(0.01))
    await asyncio.sleep(0.05)
    assert registry.get_sample_value(LIMIT_METRIC) == 100 * MIB
    (mount / "memory.max").write_text(f"{200 * MIB}\n")
    await asyncio.sleep(0.1)
    assert registry.get_sample_value(LIMIT_METRIC) == 200 * MIB
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

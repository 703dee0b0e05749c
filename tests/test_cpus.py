"""The default worker count: CPUs from the affinity mask and the cgroup quota, the smaller."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest

from flowservice_server import cpus
from tests import processes

CPU_MOUNT_V1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
MEMORY_MOUNT_V1 = "33 31 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
UNIFIED_MOUNT = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def _tree(root: Path, files: dict[str, str]) -> Path:
    """A file system root holding `files` (path relative to / → contents)."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000\n", None), ("200000 100000\n", 2.0), ("50000 100000\n", 0.5), ("max\n", None)],
)
def test_cpu_max_is_quota_over_period(cpu_max: str, expected: float | None) -> None:
    assert cpus.quota_from_cpu_max(cpu_max) == expected


def test_cfs_quota_minus_one_is_no_limit() -> None:
    assert cpus.quota_from_cfs("-1\n", "100000\n") is None
    assert cpus.quota_from_cfs("150000\n", "100000\n") == 1.5


def test_cgroup_v2_quota_of_a_container(tmp_path: Path) -> None:
    """Inside a container with a cgroup namespace: the group is "/" at the mount point."""
    root = _tree(
        tmp_path,
        {
            "proc/self/mountinfo": UNIFIED_MOUNT,
            "proc/self/cgroup": "0::/\n",
            "sys/fs/cgroup/cpu.max": "150000 100000\n",
        },
    )
    assert cpus.cgroup_cpu_quota(root) == 1.5


def test_cgroup_v2_a_parents_limit_binds_its_child(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "proc/self/mountinfo": UNIFIED_MOUNT,
            "proc/self/cgroup": "0::/kubepods/pod1/app\n",
            "sys/fs/cgroup/cpu.max": "max 100000\n",
            "sys/fs/cgroup/kubepods/pod1/cpu.max": "300000 100000\n",
            "sys/fs/cgroup/kubepods/pod1/app/cpu.max": "max 100000\n",
        },
    )
    assert cpus.cgroup_cpu_quota(root) == 3.0


def test_cgroup_v1_quota_under_the_mounts_root(tmp_path: Path) -> None:
    """A v1 container: the mount's root is the container's group, as /proc/self/cgroup says."""
    root = _tree(
        tmp_path,
        {
            "proc/self/mountinfo": CPU_MOUNT_V1.replace(" / /sys", " /docker/abc /sys")
            + MEMORY_MOUNT_V1,
            "proc/self/cgroup": "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n",
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "250000\n",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/memory/cpu.cfs_quota_us": "100000\n",  # not the cpu hierarchy
            "sys/fs/cgroup/memory/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cpus.cgroup_cpu_quota(root) == 2.5


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cpus.cgroup_cpu_quota(tmp_path) is None
    unlimited = _tree(
        tmp_path / "unlimited",
        {
            "proc/self/mountinfo": CPU_MOUNT_V1,
            "proc/self/cgroup": "1:cpu:/\n",
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cpus.cgroup_cpu_quota(unlimited) is None


def test_the_quota_caps_the_affinity_and_one_is_the_least(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    files = {"proc/self/mountinfo": UNIFIED_MOUNT, "proc/self/cgroup": "0::/\n"}
    half = _tree(tmp_path / "half", {**files, "sys/fs/cgroup/cpu.max": "50000 100000"})
    assert cpus.usable_cpus(half) == 1
    huge = _tree(tmp_path / "huge", {**files, "sys/fs/cgroup/cpu.max": "6400000 100000"})
    assert cpus.usable_cpus(huge) == affinity
    if affinity > 1:
        tight = _tree(tmp_path / "tight", {**files, "sys/fs/cgroup/cpu.max": "199999 100000"})
        assert cpus.usable_cpus(tight) == 1


def test_this_machines_own_cgroup_files(tmp_path: Path) -> None:
    """The real /proc and /sys, copied into a root: the same answer as read in place."""
    copied: dict[str, str] = {}
    for name in ("proc/self/mountinfo", "proc/self/cgroup"):
        copied[name] = (Path("/") / name).read_text()
    real = cpus.cgroup_cpu_quota()
    for mount in cpus.parse_mountinfo(copied["proc/self/mountinfo"]):
        for name in ("cpu.max", "cpu.cfs_quota_us", "cpu.cfs_period_us"):
            source = Path(str(mount.mount_point)) / name
            if source.is_file():
                target = tmp_path / str(mount.mount_point).lstrip("/") / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
    root = _tree(tmp_path, copied)
    assert cpus.cgroup_cpu_quota(root) == real
    assert real is None or real > 0
    expected = len(os.sched_getaffinity(0))
    if real is not None:
        expected = min(expected, math.floor(real))
    assert cpus.usable_cpus() == max(expected, 1)


async def _workers_started(tmp_path: Path, cpu_list: str) -> str:
    """The startup line of `flowservice serve` (no --workers) run under `taskset -c CPU_LIST`."""
    database = f"sqlite:///{tmp_path / 'pinned.db'}"
    server = await processes.start(
        ["--address", "127.0.0.1:0", "--database-url", database],
        tmp_path,
        {},
        prefix=["taskset", "-c", cpu_list],
    )
    assert await server.stop() == 0
    return next(line for line in server.log if "listening on" in line)


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
async def test_a_server_pinned_to_one_cpu_starts_one_worker(tmp_path: Path) -> None:
    listening = await _workers_started(tmp_path, "0")
    assert ", 1 worker," in listening, listening


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
async def test_a_server_pinned_to_two_cpus_starts_two_workers(tmp_path: Path) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    if cpus.usable_cpus() < 2:
        pytest.skip("this process may use only one CPU")
    listening = await _workers_started(tmp_path, f"{allowed[0]},{allowed[1]}")
    assert ", 2 workers," in listening, listening

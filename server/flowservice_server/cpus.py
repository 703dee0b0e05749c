"""How many CPUs this process may use: its affinity, capped by its cgroup's CPU quota.

`os.cpu_count()` counts the machine's CPUs. A container limited to two CPUs
on a 64-core node, or a process pinned with `taskset`, would start one worker
per core of the machine and have them throttled or queued on the few it may
run on. The affinity mask says which cores the scheduler may use; the cgroup
quota (cgroup v2's `cpu.max`, cgroup v1's `cpu.cfs_quota_us` over
`cpu.cfs_period_us`) says how much CPU time per period the group may take,
wherever it runs. The smaller of the two wins, rounded down (a fractional
share of a core does not make a worker worth its memory), and never less than 1.

The quota is read from the cgroup hierarchies that `/proc/self/mountinfo`
mounts and `/proc/self/cgroup` places this process in, at the process's own
group and every ancestor visible in the mount (a parent's limit binds its
children). Every reader takes the root of the file system as an argument, so
it is a function of file contents that tests give it from a directory.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path("/")


@dataclass(frozen=True)
class CgroupMount:
    """One cgroup file system: where it is mounted, and which group is at its mount point."""

    version: int  # 1 or 2
    mount_point: PurePosixPath
    root: PurePosixPath  # the group shown at the mount point (not "/" inside some containers)


def quota_from_cpu_max(text: str) -> float | None:
    """cgroup v2 `cpu.max` ("QUOTA PERIOD", QUOTA "max" when unlimited) as CPUs, or None."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    period = int(fields[1]) if len(fields) > 1 else 100_000
    return int(fields[0]) / period if period > 0 else None


def quota_from_cfs(quota_us: str, period_us: str) -> float | None:
    """cgroup v1 `cpu.cfs_quota_us` (-1 when unlimited) over `cpu.cfs_period_us`, or None."""
    quota, period = int(quota_us.strip()), int(period_us.strip())
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup v2 mount and the v1 mount that has the `cpu` controller, from mountinfo."""
    mounts: list[CgroupMount] = []
    for line in text.splitlines():
        before, separator, after = line.partition(" - ")
        if not separator:
            continue
        fields, described = before.split(), after.split()
        if len(fields) < 5 or len(described) < 3:
            continue
        root, mount_point = (PurePosixPath(_unescape(f)) for f in fields[3:5])
        fstype, super_options = described[0], described[2].split(",")
        if fstype == "cgroup2":
            mounts.append(CgroupMount(2, mount_point, root))
        elif fstype == "cgroup" and "cpu" in super_options:
            mounts.append(CgroupMount(1, mount_point, root))
    return mounts


def parse_proc_cgroup(text: str) -> dict[int, PurePosixPath]:
    """This process's group in the v2 hierarchy (key 2) and in v1's `cpu` one (key 1)."""
    groups: dict[int, PurePosixPath] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            groups[2] = PurePosixPath(path)
        elif "cpu" in controllers.split(","):
            groups[1] = PurePosixPath(path)
    return groups


def cgroup_cpu_quota(root: Path = ROOT) -> float | None:
    """The smallest CPU quota over this process's groups and their ancestors; None: no limit."""
    try:
        mounts = parse_mountinfo((root / "proc/self/mountinfo").read_text())
        groups = parse_proc_cgroup((root / "proc/self/cgroup").read_text())
    except OSError:
        return None
    quotas = [
        quota
        for mount in mounts
        if mount.version in groups
        for directory in _group_directories(root, mount, groups[mount.version])
        if (quota := _read_quota(directory, mount.version)) is not None
    ]
    return min(quotas, default=None)


def usable_cpus(root: Path = ROOT) -> int:
    """CPUs this process may use: affinity and cgroup quota, the smaller, at least 1."""
    cpus = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, math.floor(quota))
    return max(cpus, 1)


def _group_directories(root: Path, mount: CgroupMount, group: PurePosixPath) -> list[Path]:
    """The group's directory under the mount point, then each ancestor's up to the mount point.

    A group outside the mount's root (a container that sees its host's paths)
    is looked up as if the mount's root were its own.
    """
    try:
        relative = group.relative_to(mount.root)
    except ValueError:
        relative = PurePosixPath()
    base = root / mount.mount_point.relative_to("/")
    directories = [base / relative]
    directories += [base / parent for parent in relative.parents]
    return directories


def _read_quota(directory: Path, version: int) -> float | None:
    try:
        if version == 2:
            return quota_from_cpu_max((directory / "cpu.max").read_text())
        return quota_from_cfs(
            (directory / "cpu.cfs_quota_us").read_text(),
            (directory / "cpu.cfs_period_us").read_text(),
        )
    except (OSError, ValueError):
        return None


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field

"""Limits: finding the host's cgroups, and an attempt's cgroup on a fake cgroupfs."""

from __future__ import annotations

import os
from pathlib import Path

from taskyard.worker.sandbox import limits
from taskyard.worker.sandbox.limits import CgroupLimits, Rlimits, limits_for

HYBRID_CGROUP = """\
4:memory:/process_api/abc
8:pids:/
1:cpu,cpuacct:/
0::/
"""
HYBRID_MOUNTS = """\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_what_the_host_mounts_and_where_this_process_is() -> None:
    assert limits.cgroup_paths(HYBRID_CGROUP) == {
        "memory": "/process_api/abc", "pids": "/", "cpu": "/", "cpuacct": "/", "": "/",
    }  # fmt: skip
    assert limits.cgroup_mounts(HYBRID_MOUNTS) == {
        "memory": ("/sys/fs/cgroup/memory", "/"),
        "pids": ("/sys/fs/cgroup/pids", "/"),
        "": ("/sys/fs/cgroup/unified", "/"),
    }


def test_a_v2_hierarchy_without_the_controllers_falls_back(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("hugetlb\n")
    mounts = HYBRID_MOUNTS.replace("/sys/fs/cgroup/unified", str(unified))
    mounts = mounts.replace("/sys/fs/cgroup/memory", str(tmp_path / "missing"))
    files = {"/proc/self/cgroup": HYBRID_CGROUP, "/proc/self/mountinfo": mounts}
    assert limits.discover("w1", files.__getitem__) == {"kind": "rlimit"}


def test_v1_cgroups_are_made_under_this_process_own(tmp_path: Path) -> None:
    (tmp_path / "memory" / "process_api" / "abc").mkdir(parents=True)
    (tmp_path / "pids").mkdir()
    mounts = HYBRID_MOUNTS.replace("/sys/fs/cgroup", str(tmp_path)).replace("unified", "none")
    files = {"/proc/self/cgroup": HYBRID_CGROUP, "/proc/self/mountinfo": mounts}
    found = limits.discover("w1", files.__getitem__)
    assert found == {
        "kind": "cgroup1",
        "memory": str(tmp_path / "memory" / "process_api" / "abc" / "taskyard-w1"),
        "pids": str(tmp_path / "pids" / "taskyard-w1"),
    }
    limits.forget(found)
    assert not (tmp_path / "pids" / "taskyard-w1").exists()


def fake_v2(tmp_path: Path) -> CgroupLimits:
    limiter = {"kind": "cgroup2", "parent": str(tmp_path)}
    attempt = limits_for(limiter, "r1.1", memory_mb=64, processes=20)
    assert isinstance(attempt, CgroupLimits)
    # On a real cgroupfs the kernel makes these files with the directory.
    (tmp_path / "r1.1").mkdir()
    for name in ("memory.max", "memory.swap.max", "pids.max", "cgroup.procs"):
        (tmp_path / "r1.1" / name).write_text("")
    return attempt


def test_an_attempts_cgroup_holds_its_limits_and_says_which_was_hit(tmp_path: Path) -> None:
    attempt = fake_v2(tmp_path)
    directory = tmp_path / "r1.1"
    attempt.attach(os.getpid() + 10**6)
    assert (directory / "memory.max").read_text() == str(64 * 1024 * 1024)
    assert (directory / "memory.swap.max").read_text() == "0"
    assert (directory / "pids.max").read_text() == "20"
    assert (directory / "cgroup.procs").read_text() == str(os.getpid() + 10**6)
    assert attempt.exceeded() is None
    (directory / "pids.events").write_text("max 0\n")
    (directory / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    exceeded = attempt.exceeded()
    assert exceeded is not None
    assert (exceeded.reason, exceeded.message) == (
        "memory-limit", "it went past its memory limit of 64 MB",
    )  # fmt: skip
    (directory / "memory.events").write_text("oom_kill 0\n")
    (directory / "pids.events").write_text("max 2\n")
    exceeded = attempt.exceeded()
    assert exceeded is not None
    assert exceeded.reason == "process-limit"


def test_releasing_a_cgroup_removes_it(tmp_path: Path) -> None:
    attempt = fake_v2(tmp_path)
    attempt.attach(os.getpid() + 10**6)
    for name in list((tmp_path / "r1.1").iterdir()):
        name.unlink()  # a real cgroupfs has no files to remove: rmdir takes it all
    attempt.release()
    assert not (tmp_path / "r1.1").exists()


def test_elsewhere_rlimits() -> None:
    assert limits_for({"kind": "rlimit"}, "r1.1", 64, 20) == Rlimits(64, 20)

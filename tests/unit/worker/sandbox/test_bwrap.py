"""What a sandboxed program is given: bubblewrap's options, and the host's view."""

from __future__ import annotations

import os
from pathlib import Path

from taskyard.tasks.run_options import RunOptions
from taskyard.worker.sandbox import host
from taskyard.worker.sandbox.bwrap import arguments, environment_view
from taskyard.worker.sandbox.settings import SandboxSettings

SETTINGS = SandboxSettings(network=True, hidden=("/etc/shadow",), lang="de_DE.UTF-8")


def pairs(found: list[str], option: str) -> list[tuple[str, ...]]:
    """Each use of `option` with its two values."""
    return [tuple(found[i + 1 : i + 3]) for i, a in enumerate(found) if a == option]


def test_a_program_is_sealed_off_by_default() -> None:
    found = arguments(SandboxSettings(), RunOptions(), Path("/data/work/r1.1"), None, {})
    assert found[:3] == ["--unshare-all", "--unshare-user", "--disable-userns"]
    assert "--share-net" not in found
    assert found[found.index("--cap-drop") : found.index("--cap-drop") + 2] == ["--cap-drop", "ALL"]
    assert ("/data/work/r1.1", "/work") in pairs(found, "--bind")
    assert pairs(found, "--bind") == [("/data/work/r1.1", "/work")]  # the only writable host path
    assert found[found.index("--clearenv") - 1] != "--setenv"
    assert found[-2:] == ["--remount-ro", "/"]
    remounted = [found[i + 1] for i, a in enumerate(found) if a == "--remount-ro"]
    assert remounted == ["/proc", "/"]  # /proc read-only: the kernel's settings stay out of reach


def test_the_environment_is_the_allowlist_and_the_tasks_env() -> None:
    found = arguments(SETTINGS, RunOptions(), Path("/w"), None, {"CC": "gcc", "HOME": "/elsewhere"})
    assert pairs(found, "--setenv") == [
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"),
        ("HOME", "/elsewhere"),  # the task's own env wins
        ("LANG", "de_DE.UTF-8"),
        ("TMPDIR", "/tmp"),
        ("CC", "gcc"),
    ]


def test_the_network_only_when_asked_for_where_allowed() -> None:
    online = RunOptions(network=True)
    assert "--share-net" in arguments(SETTINGS, online, Path("/w"), None, {})
    assert "--share-net" not in arguments(SandboxSettings(), online, Path("/w"), None, {})
    assert "--share-net" not in arguments(SETTINGS, RunOptions(), Path("/w"), None, {})


def test_hidden_host_paths_are_covered(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("secret")
    found = host.hiding([str(tmp_path / "dir"), str(tmp_path / "file"), str(tmp_path / "gone")])
    assert found == [
        "--tmpfs",
        str(tmp_path / "dir"),
        "--ro-bind",
        "/dev/null",
        str(tmp_path / "file"),
    ]
    assert ("/dev/null", "/etc/shadow") in pairs(
        arguments(SETTINGS, RunOptions(), Path("/w"), None, {}), "--ro-bind"
    )


def test_what_others_may_not_read_is_found(tmp_path: Path) -> None:
    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "readable").write_text("x")
    (tmp_path / "open" / "private").write_text("x")
    (tmp_path / "open" / "private").chmod(0o600)
    (tmp_path / "closed").mkdir(mode=0o700)
    (tmp_path / "closed" / "inside").write_text("x")
    (tmp_path / "open" / "link").symlink_to(tmp_path / "closed")
    assert host._private(tmp_path) == [tmp_path / "closed", tmp_path / "open" / "private"] or (
        sorted(host._private(tmp_path))
        == sorted([tmp_path / "closed", tmp_path / "open" / "private"])
    )


def test_an_environment_replaces_the_hosts_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "work").mkdir()  # ours: never the environment's
    (root / "marker").write_text("x")
    view = environment_view(root)
    assert view == [
        "--symlink", "usr/bin", "/bin",
        "--ro-bind", str(root / "marker"), "/marker",
        "--ro-bind", str(root / "usr"), "/usr",
    ]  # fmt: skip
    found = arguments(SETTINGS, RunOptions(environment="e1"), Path("/w"), root, {})
    assert ("/etc", "/etc") not in pairs(found, "--ro-bind")
    assert ("/dev/null", "/etc/shadow") not in pairs(found, "--ro-bind")


def test_the_proc_masks_are_those_the_kernel_has() -> None:
    masked = host.masking_proc()
    assert all(os.path.lexists(path) for path in masked[2::3])

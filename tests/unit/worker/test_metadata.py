"""What the worker reports about itself."""

from __future__ import annotations

import platform

from taskyard.worker.metadata import DEBIAN_ARCHITECTURES, worker_metadata


def test_metadata_has_every_task_and_the_system_facts() -> None:
    metadata = worker_metadata(slots=3)
    assert metadata["noop:version"] == 1
    assert metadata["command:version"] == 1
    assert metadata["system:slots"] == 3
    assert metadata["system:cpu_count"] >= 1
    assert metadata["system:total_memory"] > 2**20
    assert metadata["system:architecture"] == platform.machine()
    expected = DEBIAN_ARCHITECTURES.get(platform.machine(), platform.machine())
    assert metadata["system:debian_architecture"] == expected
    assert metadata["system:os"] == "linux"
    assert metadata["system:python_version"] == platform.python_version()
    assert metadata["system:taskyard_version"]


def test_kernel_names_map_to_debian_names() -> None:
    assert DEBIAN_ARCHITECTURES["x86_64"] == "amd64"
    assert DEBIAN_ARCHITECTURES["aarch64"] == "arm64"

"""1 GiB through Taskyard's artifact upload, beside a bare gRPC upload.

The bare baseline is a client-streaming RPC that writes each 1 MiB chunk to
a file and hashes it in a thread: what any verified upload must do at least.
Taskyard adds the manifest, offsets, the content-addressed store and
verification. Both run against a server in its own process; the scheduler's
peak RSS growth shows whether memory stays bounded. Target: ratio >= 0.75,
RSS growth <= 64 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from taskyard.rpc import transfer
from taskyard.rpc.credentials import MAX_CHUNK, bearer_metadata
from taskyard.v1 import artifacts_pb2_grpc

from support import bare_server, channel_to, machine, scheduler_process

MIB = 1024 * 1024


def peak_rss(pid: int) -> int:
    """Peak resident memory of a process, in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def make_file(directory: Path, size: int) -> Path:
    path = directory / "payload.bin"
    block = os.urandom(MIB)
    with open(path, "wb") as file:
        for _ in range(size // MIB):
            file.write(block)
    return path


async def bare_upload(path: Path) -> float:
    """MB/s of the bare client-streaming upload."""
    with bare_server() as server:
        async with channel_to(server.address) as channel:
            call = channel.stream_unary("/bench.Bare/Upload", None, None)

            async def chunks() -> AsyncIterator[bytes]:
                with open(path, "rb") as file:
                    while data := file.read(MAX_CHUNK):
                        yield data

            started = time.perf_counter()
            await call(chunks())
            return path.stat().st_size / (time.perf_counter() - started) / 1e6


async def taskyard_upload(path: Path) -> tuple[float, float, int]:
    """MB/s of the upload proper, MB/s with the client's hashing, scheduler RSS growth."""
    with scheduler_process() as (scheduler, admin):
        async with channel_to(scheduler.address) as channel:
            stub = artifacts_pb2_grpc.ArtifactServiceStub(channel)
            metadata = bearer_metadata(admin)
            small = path.with_name("small.bin")
            small.write_bytes(b"warm-up")
            await transfer.upload(stub, metadata, category="bench", files={"w": small})
            before = peak_rss(scheduler.pid)
            started = time.perf_counter()
            entry = transfer.describe_file(path, "payload.bin")
            hashed = time.perf_counter()
            await transfer.upload(stub, metadata, category="bench", files={"payload.bin": path})
            done = time.perf_counter()
            growth = peak_rss(scheduler.pid) - before
    size = entry.size / 1e6
    return size / (done - hashed), size / (done - started), growth


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=1024, help="size of the upload in MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskyard-bench-upload-") as directory:
        path = make_file(Path(directory), args.mib * MIB)
        bare = await bare_upload(path)
        upload_rate, with_hashing, growth = await taskyard_upload(path)
    print(f"machine: {machine()}")
    print(f"{args.mib} MiB in 1 MiB chunks, loopback")
    print(f"{'measure':<46} {'MB/s':>8}")
    print(f"{'bare gRPC upload (write + hash in a thread)':<46} {bare:>8,.0f}")
    print(f"{'taskyard upload (after the client hashed)':<46} {upload_rate:>8,.0f}")
    print(f"{'taskyard upload including the client hashing':<46} {with_hashing:>8,.0f}")
    print(f"ratio taskyard / bare: {upload_rate / bare:.2f}")
    print(f"scheduler peak RSS growth: {growth / MIB:.1f} MiB")


if __name__ == "__main__":
    asyncio.run(main())

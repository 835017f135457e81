"""The baseline of the benchmarks: a gRPC server whose one method echoes its bytes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import grpc

from taskyard.rpc.credentials import CHANNEL_OPTIONS


async def echo(request: bytes, _context: Any) -> bytes:
    return request


async def upload(chunks: AsyncIterator[bytes], _context: Any) -> bytes:
    """The upload baseline: write each chunk to a new file and hash it, in a thread."""
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(prefix="bare-upload-") as file:

        def store(data: bytes) -> None:
            file.write(data)
            digest.update(data)

        async for chunk in chunks:
            await asyncio.to_thread(store, chunk)
        file.flush()
        os.fsync(file.fileno())
    return digest.digest()


async def main() -> None:
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    handler = grpc.method_handlers_generic_handler(
        "bench.Bare",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Upload": grpc.stream_unary_rpc_method_handler(upload),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"bare server listening on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    asyncio.run(main())

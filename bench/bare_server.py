"""The baseline of the benchmarks: a gRPC server whose one method echoes its bytes."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import grpc


async def echo(request: bytes, _context: Any) -> bytes:
    return request


async def main() -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Bare", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
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

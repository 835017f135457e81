"""Server interceptors wrap a method's behaviour; this rebuilds its handler around the wrapper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

# A string: grpc's handler class cannot be subscripted at run time.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Wrapper: TypeAlias = Callable[[Any], Any]
#: What a server interceptor calls for the handler of a method.
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]


def rewrapped(handler: Handler, unary: Wrapper, streaming: Wrapper) -> Handler:
    """`handler` with its behaviour wrapped: by `unary` if it returns one
    response (a coroutine), by `streaming` if it yields them (an async
    generator)."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kwargs)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **kwargs)

"""Bearer tokens in call metadata, and message size limits shared by both sides."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from taskyard import limits

#: Largest chunk of an upload or download; messages carry one chunk plus framing.
MAX_CHUNK = 1024 * 1024
MAX_MESSAGE = limits.MAX_MESSAGE

#: Both sides ping a connection silent for 5 s and drop it when no answer
#: comes within 5 s: a peer gone without a word (a machine powered off, a
#: process stopped, a network cut) is noticed within 10 s, and a worker or
#: client moves on to the next scheduler it knows.
KEEPALIVE_MS = 5_000

CHANNEL_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_MS),
    # How long gRPC's transport waits for a ping's answer (one minute by
    # default, whatever the keepalive's timeout says).
    ("grpc.http2.ping_timeout_ms", KEEPALIVE_MS),
)

#: The server's own: it accepts its clients' pings as often as they send them
#: (gRPC's default answers a ping more often than every 5 minutes on a
#: connection it sends nothing on with "too many pings", and closes it).
SERVER_OPTIONS: Sequence[tuple[str, int]] = (
    *CHANNEL_OPTIONS,
    ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_MS - 1_000),
    ("grpc.so_reuseport", 0),
)


#: Starts every token made here: it names what the string is, and keeps a
#: token from starting with "-", which a command line (`--token VALUE`)
#: would take for an option. One in 64 random URL-safe tokens did.
TOKEN_PREFIX = "ty_"


def new_token() -> str:
    """A fresh bearer token holding a 256-bit secret."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `token` as bearer token."""
    return (("authorization", f"Bearer {token}"),)


def bearer_of(metadata: Iterable[Any] | None) -> str | None:
    """The bearer token in call metadata (pairs of key and value), if any."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None

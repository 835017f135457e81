"""Where a client or worker finds the scheduler: one address, or several.

`--scheduler A,B,C` (or `TASKYARD_SCHEDULER=A,B`) names several schedulers
of one database; a single name with several addresses in DNS does too. The
channel connects to the first that answers (gRPC's `pick_first`), and, when
that one goes away, to the next: a worker's next session and a client's
next call go there. Calls safe to repeat (reads, and submissions carrying an
idempotency key, which the CLI always gives) are retried on it by gRPC's
own retry policy, on UNAVAILABLE.
"""

from __future__ import annotations

import json
import socket

from taskyard.errors import InvalidArgumentError, UnavailableError

#: What a client may repeat on another scheduler without doing it twice.
SAFE_TO_REPEAT = {
    "taskyard.v1.WorkRequestService": [
        "Submit", "BatchSubmit", "Get", "List", "Explain", "Logs", "Watch",
    ],
    "taskyard.v1.ArtifactService": [
        "GetArtifact", "ListArtifacts", "DownloadArtifact", "QueryUploadStatus",
    ],
    "taskyard.v1.OperatorService": ["ListWorkers", "ListTasks", "ListTokens"],
}  # fmt: skip

#: gRPC's service config: those calls retried on UNAVAILABLE, a few times.
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": service, "method": method} for method in methods],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
            for service, methods in SAFE_TO_REPEAT.items()
        ]
    }
)


def split(addresses: str) -> list[str]:
    """The HOST:PORT entries of a comma-separated list, checked."""
    found = [entry.strip() for entry in addresses.split(",") if entry.strip()]
    if not found:
        raise InvalidArgumentError("no scheduler address given (HOST:PORT[,HOST:PORT...])")
    for entry in found:
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise InvalidArgumentError(
                f"scheduler address {entry!r} must be HOST:PORT, with a port from 1 to 65535"
            )
    return found


def channel_target(addresses: str) -> str:
    """A gRPC target for one address (as is: a DNS name may resolve to
    several) or for several (each resolved, in order, into one list)."""
    entries = split(addresses)
    if len(entries) == 1:
        return entries[0]
    resolved: list[str] = []
    for entry in entries:
        host, _, port = entry.rpartition(":")
        try:
            found = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except OSError as error:
            raise UnavailableError(f"cannot resolve {host}: {error}") from error
        for family, _, _, _, address in found:
            if family == socket.AF_INET and f"{address[0]}:{port}" not in resolved:
                resolved.append(f"{address[0]}:{port}")
    if not resolved:
        raise InvalidArgumentError(f"none of {addresses!r} has an IPv4 address")
    return "ipv4:" + ",".join(resolved)

"""The worker session protocol's version, negotiated in the hello.

2 is `taskyard.v1.WorkerService.Session` as `protos/` states it; 0 (unset) is
the first v1 contract, whose messages moved. A scheduler serves the versions
in SUPPORTED and refuses any other at once, naming both.
"""

from __future__ import annotations

PROTOCOL_VERSION = 2
SUPPORTED = frozenset({PROTOCOL_VERSION})

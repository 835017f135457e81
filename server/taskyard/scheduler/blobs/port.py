"""The blob storage port: contents stored once per (sha256, size).

Uploads write to a partial blob named by an upload key; `finish` verifies
size and digest and turns it into a blob, or removes it. Methods block: the
service calls them off the event loop. An object-store adapter would keep
partial blobs as multipart uploads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class BlobStore(Protocol):
    """Where artifact contents live."""

    def has(self, sha256: str, size: int) -> bool:
        """Whether this content is stored already."""

    def committed(self, key: str) -> int:
        """Bytes of the partial blob `key` written so far (0 if none)."""

    def append(self, key: str, offset: int, data: bytes) -> int:
        """Write `data` at `offset`, which must be the committed size; return the new size.

        Offset 0 starts a new partial blob (never truncating a stored blob).
        """

    def finish(self, key: str, sha256: str, size: int) -> None:
        """Verify the partial blob and store it as (sha256, size).

        On a size or digest mismatch the partial blob is removed and
        InvalidArgumentError raised.
        """

    def discard(self, key: str) -> None:
        """Remove a partial blob, if any."""

    def read(self, sha256: str, size: int, offset: int, length: int) -> bytes:
        """Up to `length` bytes of a stored blob from `offset`."""

    def partial_keys_older_than(self, seconds: float) -> list[str]:
        """Partial blobs untouched for `seconds`."""

    def stored_older_than(self, seconds: float) -> Iterator[tuple[str, int]]:
        """(sha256, size) of the stored blobs untouched for `seconds` (`has`
        touches a blob: one just found again is not collected)."""

    def remove(self, sha256: str, size: int) -> None:
        """Delete a stored blob (nothing refers to it any more)."""

"""The identity of an embedding space, and whether search may be served from it."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSignature:
    """Two vectors are comparable only if they were made under equal signatures."""

    name: str
    dimension: int
    hash: str

    @property
    def key(self) -> int:
        """64 bits of the signature: what a staged row stores instead of name, size and hash
        (8 bytes, not ~108; two models of one target collide with odds of 1 in 2**64)."""
        digest = hashlib.sha256(f"{self.name}\0{self.dimension}\0{self.hash}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def describe(self) -> str:
        """Short human form, for logs: `name (384-d, sha256 1a2b3c4d5e6f)`."""
        return f"{self.name} ({self.dimension}-d, sha256 {self.hash[:12]})"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ModelState(enum.StrEnum):
    """Whether the application may serve search from a target's stored vectors."""

    READY = "ready"
    REEMBEDDING = "reembedding"

"""What is re-embedded (the target), the identity of an embedding space, and every
statement for them. Value types and statement constructs only: no connection here.

`Statements` (SQLAlchemy and pgvector) loads on first use, so the value types stay cheap
to import (`vestige --help`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vestige_embed.target.signature import ModelSignature, ModelState
from vestige_embed.target.target import DEFAULT_TARGET, Distance, HnswParams, KeyType, Storage, Target

if TYPE_CHECKING:
    from vestige_embed.target.statements import Statements

__all__ = [
    "DEFAULT_TARGET",
    "Distance",
    "HnswParams",
    "KeyType",
    "ModelSignature",
    "ModelState",
    "Statements",
    "Storage",
    "Target",
]


def __getattr__(name: str) -> Any:
    if name == "Statements":
        from vestige_embed.target.statements import Statements

        return Statements
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

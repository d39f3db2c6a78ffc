"""What is re-embedded (the target), the identity of an embedding space, and every
statement for them. Value types and statement constructs only: no connection here."""

from vestige_embed.target.signature import ModelSignature, ModelState
from vestige_embed.target.statements import Statements
from vestige_embed.target.target import DEFAULT_TARGET, Distance, HnswParams, KeyType, Storage, Target

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

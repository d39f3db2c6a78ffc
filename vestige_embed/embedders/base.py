"""The `Embedder` protocol: all the engine knows about a model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from vestige_embed.target.signature import ModelSignature

Matrix = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of one embedding space.

    `embed_batch` is called from a worker thread while the caller streams and writes
    rows, so it must not touch the caller's database connection and should release
    the GIL for its heavy work (numpy and onnxruntime both do).
    """

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def signature(self) -> ModelSignature: ...

    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        """Return a float32 array of shape `(len(texts), dimension)`, one row per text."""
        ...

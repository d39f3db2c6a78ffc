"""Embedders behind one protocol, and the one place a model name becomes an embedder."""

from __future__ import annotations

from pathlib import Path

from vestige_embed.embedders.base import Embedder, Matrix
from vestige_embed.embedders.fastembed_model import FastembedEmbedder, supported_models
from vestige_embed.embedders.hashing import MAX_DIMENSION as HASH_MAX_DIMENSION
from vestige_embed.embedders.hashing import NAME_PREFIX as HASH_PREFIX
from vestige_embed.embedders.hashing import HashEmbedder
from vestige_embed.errors import DimensionMismatchError, UnknownModelError

#: Longer names are cut in messages (a mistyped argument can be anything).
_SHOWN_NAME = 120

__all__ = ["Embedder", "FastembedEmbedder", "HashEmbedder", "Matrix", "known_models", "resolve_embedder"]


def known_models() -> list[str]:
    """Every name `resolve_embedder` accepts (hashing embedders as one pattern)."""
    return [f"{HASH_PREFIX}<1..{HASH_MAX_DIMENSION}>", *sorted(supported_models())]


def resolve_embedder(
    name: str,
    dimension: int | None = None,
    *,
    models_dir: Path | None = None,
    threads: int | None = None,
    device: str = "auto",
) -> Embedder:
    """The embedder called `name`; fails before any work if `dimension` is given and differs.

    Models load lazily, so resolving is cheap and validates names and dimensions up front.
    `models_dir` is the folder of model sub-folders (the surfaces pass the configured one);
    without it fastembed's own download cache is used. `threads` caps a model's
    onnxruntime threads (None: one per core) and `device` says where it runs (`auto`,
    `cpu`, `cuda`); the hashing embedder ignores both.
    """
    embedder = _build(name, models_dir, threads, device)
    if dimension is not None and dimension != embedder.dimension:
        raise DimensionMismatchError(
            f"embedder '{name}' produces dimension {embedder.dimension}, --dimension was {dimension}"
        )
    return embedder


def _build(name: str, models_dir: Path | None, threads: int | None, device: str) -> Embedder:
    if name.startswith(HASH_PREFIX):
        size = name.removeprefix(HASH_PREFIX)
        # Strict: `hash-064` is not another spelling of `hash-64` (names are signatures).
        if size.isdigit() and not size.startswith("0") and int(size) <= HASH_MAX_DIMENSION:
            return HashEmbedder(int(size))
    elif name in supported_models():
        return FastembedEmbedder(name, models_dir=models_dir, threads=threads, device=device)
    shown = name if len(name) <= _SHOWN_NAME else name[:_SHOWN_NAME] + f"... ({len(name)} characters)"
    raise UnknownModelError(f"unknown embedder model '{shown}'. Known: {', '.join(known_models())}")

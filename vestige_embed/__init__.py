"""vestige-embed: embedding-model changes for a pgvector store, as Alembic revisions.

The public names load on first use (`from vestige_embed import run_reembed` works as
ever): importing the package, as the `vestige` command does, costs nothing more.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vestige_embed.embedders import Embedder, FastembedEmbedder, HashEmbedder, resolve_embedder
    from vestige_embed.errors import (
        ConfigError,
        EmbedderError,
        ReembedError,
        SearchUnavailable,
        StagingError,
        VestigeError,
    )
    from vestige_embed.run.engine import dry_run_reembed, run_reembed
    from vestige_embed.run.plan import DryRunSummary, ReembedPlan, ReembedReport
    from vestige_embed.run.staging import StageReport, stage
    from vestige_embed.store.registry import register_target
    from vestige_embed.store.search import Hit, vector_search
    from vestige_embed.store.writer_contract import model_for_write, pending_model, stage_written
    from vestige_embed.target import DEFAULT_TARGET, Distance, HnswParams, KeyType, ModelSignature, Storage, Target

#: Each public name and the module that defines it.
_EXPORTS = {
    "ConfigError": "vestige_embed.errors",
    "DEFAULT_TARGET": "vestige_embed.target",
    "Distance": "vestige_embed.target",
    "DryRunSummary": "vestige_embed.run.plan",
    "Embedder": "vestige_embed.embedders",
    "EmbedderError": "vestige_embed.errors",
    "FastembedEmbedder": "vestige_embed.embedders",
    "HashEmbedder": "vestige_embed.embedders",
    "Hit": "vestige_embed.store.search",
    "HnswParams": "vestige_embed.target",
    "KeyType": "vestige_embed.target",
    "ModelSignature": "vestige_embed.target",
    "ReembedError": "vestige_embed.errors",
    "ReembedPlan": "vestige_embed.run.plan",
    "ReembedReport": "vestige_embed.run.plan",
    "SearchUnavailable": "vestige_embed.errors",
    "StageReport": "vestige_embed.run.staging",
    "StagingError": "vestige_embed.errors",
    "Storage": "vestige_embed.target",
    "Target": "vestige_embed.target",
    "VestigeError": "vestige_embed.errors",
    "dry_run_reembed": "vestige_embed.run.engine",
    "model_for_write": "vestige_embed.store.writer_contract",
    "pending_model": "vestige_embed.store.writer_contract",
    "register_target": "vestige_embed.store.registry",
    "resolve_embedder": "vestige_embed.embedders",
    "run_reembed": "vestige_embed.run.engine",
    "stage": "vestige_embed.run.staging",
    "stage_written": "vestige_embed.store.writer_contract",
    "vector_search": "vestige_embed.store.search",
}

__all__ = [
    "DEFAULT_TARGET",
    "ConfigError",
    "Distance",
    "DryRunSummary",
    "Embedder",
    "EmbedderError",
    "FastembedEmbedder",
    "HashEmbedder",
    "Hit",
    "HnswParams",
    "KeyType",
    "ModelSignature",
    "ReembedError",
    "ReembedPlan",
    "ReembedReport",
    "SearchUnavailable",
    "StageReport",
    "StagingError",
    "Storage",
    "Target",
    "VestigeError",
    "dry_run_reembed",
    "model_for_write",
    "pending_model",
    "register_target",
    "resolve_embedder",
    "run_reembed",
    "stage",
    "stage_written",
    "vector_search",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

"""vestige-embed: embedding-model changes for a pgvector store, as Alembic revisions."""

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

"""vestige-embed: embedding-model changes for a pgvector memory store, as Alembic revisions."""

from vestige_embed.embedders import Embedder, FastembedEmbedder, HashEmbedder, resolve_embedder
from vestige_embed.engine import dry_run_reembed, run_reembed
from vestige_embed.errors import (
    ConfigError,
    EmbedderError,
    ReembedError,
    SearchUnavailable,
    StagingError,
    VestigeError,
)
from vestige_embed.plan import DryRunSummary, ReembedPlan, ReembedReport
from vestige_embed.search import Hit, vector_search
from vestige_embed.signature import ModelSignature
from vestige_embed.staging import StageReport, stage

__all__ = [
    "ConfigError",
    "DryRunSummary",
    "Embedder",
    "EmbedderError",
    "FastembedEmbedder",
    "HashEmbedder",
    "Hit",
    "ModelSignature",
    "ReembedError",
    "ReembedPlan",
    "ReembedReport",
    "SearchUnavailable",
    "StageReport",
    "StagingError",
    "VestigeError",
    "dry_run_reembed",
    "resolve_embedder",
    "run_reembed",
    "stage",
    "vector_search",
]

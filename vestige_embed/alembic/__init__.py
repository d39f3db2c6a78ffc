"""The Alembic surface: `import vestige_embed.alembic` registers `op.reembed`."""

from vestige_embed.alembic.ops import ReembedOp

__all__ = ["ReembedOp"]

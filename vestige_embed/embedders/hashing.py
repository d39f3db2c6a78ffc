"""`HashEmbedder`: deterministic feature hashing, the dependency-free baseline.

It is lexical, not semantic: texts that share words and spellings land close
together, synonyms and paraphrases do not. It exists so the engine can be tested
and benchmarked without a model, and as the store's initial model.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from functools import cached_property

import numpy as np
import numpy.typing as npt

from vestige_embed.embedders.base import Matrix
from vestige_embed.target.signature import ModelSignature

NAME_PREFIX = "vestige/hash-"
#: pgvector's largest vector; HNSW limits (2,000 for vector, 4,000 for halfvec) are the target's.
MAX_DIMENSION = 16_000
_ALGORITHM = "vestige-hash/v1: NFKC+casefold, words w=1.0, word bigrams w=0.5, utf-8 char 3/4-grams w=0.25, splitmix64"

_U64 = np.uint64
_SALT_WORD = _U64(0x1F0A_6D3B_99E2_47C5)
_SALT_BIGRAM = _U64(0x7A5C_0E91_3B4D_2F68)
_SALT_CHAR = (_U64(0x2C9B_D4E7_1A63_F805), _U64(0x5E17_B3A9_C02D_4F6B))
_SALT_EMPTY = _U64(0x0DDB_A11E_57AB_1E00)
_W_WORD, _W_BIGRAM, _W_CHAR = 1.0, 0.5, 0.25
_NON_WORD = re.compile(r"[\W_]+")
#: Each ASCII byte as `normalize` leaves it: A-Z lower-cased, a-z and 0-9 kept, any other a space.
_ASCII_WORD_BYTES = bytes(
    c + 32 if 0x41 <= c <= 0x5A else c if (0x30 <= c <= 0x39 or 0x61 <= c <= 0x7A) else 0x20 for c in range(256)
)


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """A fixed 64-bit mixer: the same bits on every machine and in every process."""
    z = x + _U64(0x9E37_79B9_7F4A_7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58_476D_1CE4_E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D0_49BB_1331_11EB)
    return z ^ (z >> _U64(31))


def _position_multipliers(count: int) -> npt.NDArray[np.uint64]:
    return _splitmix64(np.arange(1, count + 1, dtype=np.uint64))


_POSITION = _position_multipliers(64)


def normalize(text: str) -> str:
    """NFKC, case-folded, every run of non-word characters collapsed to one space."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


class HashEmbedder:
    """Feature hashing of words, word bigrams and UTF-8 character 3/4-grams into signed buckets."""

    def __init__(self, dimension: int) -> None:
        if dimension < 1:
            raise ValueError(f"HashEmbedder dimension must be positive, got {dimension}")
        self._dimension = dimension

    @property
    def name(self) -> str:
        return f"{NAME_PREFIX}{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    @cached_property
    def _signature(self) -> ModelSignature:
        spec = f"{_ALGORITHM}; dimension={self._dimension}".encode()
        return ModelSignature(self.name, self._dimension, hashlib.sha256(spec).hexdigest())

    def signature(self) -> ModelSignature:
        return self._signature

    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        n = len(texts)
        if n == 0:
            return np.zeros((0, self._dimension), dtype=np.float32)
        buf, owner = _concatenate([_padded(t) for t in texts])
        rows, hashes, weights = _features(buf, owner)
        buckets = (hashes >> _U64(1)) % _U64(self._dimension)
        signs = np.where((hashes & _U64(1)) == 1, weights, -weights)
        flat = rows * self._dimension + buckets.astype(np.int64)
        # Each bucket's sum starts at +0.0 (never -0.0): as float32, the same bits as adding it to zeros.
        sums = np.bincount(flat, weights=signs, minlength=n * self._dimension)
        return _unit_rows(sums.astype(np.float32).reshape(n, self._dimension), _SALT_EMPTY, self._dimension)


def _padded(text: str) -> bytes:
    """The normalized text wrapped in spaces, in UTF-8. An ASCII text takes a byte-level
    path with the same result (NFKC and case folding change no ASCII character but A-Z)
    in a quarter of the time: the hashing pass is CPU-bound, and shares the cores with the server."""
    if text.isascii():
        return b" " + b" ".join(text.encode().translate(_ASCII_WORD_BYTES).split()) + b" "
    return f" {normalize(text)} ".encode()


def _concatenate(encoded: list[bytes]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """All texts as one byte array, and which text owns each byte."""
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    owner = np.repeat(np.arange(len(encoded), dtype=np.int64), lengths)
    return buf, owner


def _features(
    buf: npt.NDArray[np.uint8], owner: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
    """(row, 64-bit feature hash, weight) for every feature of every text."""
    parts = [
        _word_features(buf, owner),
        *(_char_features(buf, owner, n, salt) for n, salt in zip((3, 4), _SALT_CHAR, strict=False)),
    ]
    rows = np.concatenate([p[0] for p in parts])
    hashes = np.concatenate([p[1] for p in parts])
    weights = np.concatenate([p[2] for p in parts])
    return rows, hashes, weights


def _char_features(
    buf: npt.NDArray[np.uint8], owner: npt.NDArray[np.int64], n: int, salt: np.uint64
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
    count = len(buf) - n + 1
    if count <= 0:
        return np.empty(0, np.int64), np.empty(0, np.uint64), np.empty(0, np.float64)
    code = np.zeros(count, dtype=np.uint64)
    for k in range(n):
        code |= buf[k : k + count].astype(np.uint64) << _U64(8 * k)
    inside = owner[:count] == owner[n - 1 :]
    # An n-gram of spaces only (two words apart) carries no information.
    hashes = _splitmix64(code[inside] ^ salt)
    return owner[:count][inside], hashes, np.full(len(hashes), _W_CHAR)


def _word_features(
    buf: npt.NDArray[np.uint8], owner: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
    letters = np.flatnonzero(buf != 0x20)
    if len(letters) == 0:
        return np.empty(0, np.int64), np.empty(0, np.uint64), np.empty(0, np.float64)
    starts_mask = np.ones(len(letters), dtype=bool)
    starts_mask[1:] = np.diff(letters) != 1
    starts = np.flatnonzero(starts_mask)
    word_of = np.cumsum(starts_mask) - 1
    position = np.arange(len(letters)) - starts[word_of]
    terms = buf[letters].astype(np.uint64) * _POSITION[position % len(_POSITION)]
    lengths = np.diff(np.append(starts, len(letters))).astype(np.uint64)
    words = _splitmix64(np.add.reduceat(terms, starts) ^ lengths ^ _SALT_WORD)
    word_rows = owner[letters[starts]]
    same_text = word_rows[1:] == word_rows[:-1]
    bigrams = _splitmix64(words[:-1][same_text] * _U64(0x9E37_79B9) ^ words[1:][same_text] ^ _SALT_BIGRAM)
    rows = np.concatenate([word_rows, word_rows[1:][same_text]])
    hashes = np.concatenate([words, bigrams])
    weights = np.concatenate([np.full(len(words), _W_WORD), np.full(len(bigrams), _W_BIGRAM)])
    return rows, hashes, weights


def _unit_rows(out: Matrix, empty_salt: np.uint64, dimension: int) -> Matrix:
    """L2-normalise each row; a text with no features gets one fixed unit vector."""
    norms = np.linalg.norm(out, axis=1)
    empty = norms == 0
    if empty.any():
        h = int(_splitmix64(np.array([empty_salt], dtype=np.uint64))[0])
        out[empty, (h >> 1) % dimension] = 1.0 if h & 1 else -1.0
        norms[empty] = 1.0
    out /= norms[:, None]
    return out

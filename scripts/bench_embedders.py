"""Embedder throughput: the fastembed adapter next to plain fastembed, and the hashing embedder.

For all-MiniLM-L6-v2 (the offline folder `make models` assembles) at caller batch sizes
32/128/512, and for vestige/hash-256, on short texts (~10 tokens, "memory number 17
talks about rust and async") and on ~200-character texts. Each configuration runs in a
fresh process, so its peak RSS is its own.

Run: `make bench` or `.venv/bin/python scripts/bench_embedders.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _bench_common import peak_rss_mb

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BATCHES = (32, 128, 512)
_PROSE = (
    "memory store vector index search model embedding postgres query table row column update batch "
    "the a of to and in for with on by from that this is are was were be can will should would async "
    "rust python server client request response cache latency throughput network disk page lock "
    "transaction commit rollback schema migration revision deploy release pipeline operator window"
)
_WORDS = _PROSE.split()


def short_texts(n: int) -> list[str]:
    topics = ["rust and async", "postgres indexes", "python typing", "vector search", "release pipelines"]
    return [f"memory number {i} talks about {topics[i % len(topics)]}" for i in range(n)]


def long_texts(n: int, chars: int = 200) -> list[str]:
    rng = random.Random(17)
    out = []
    for _ in range(n):
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < chars:
            words.append(rng.choice(_WORDS))
        out.append(" ".join(words)[:chars])
    return out


def child(impl: str, texts_kind: str, batch: int, count: int) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    texts = short_texts(count) if texts_kind == "short" else long_texts(count)
    if impl == "hash":
        from vestige_embed import HashEmbedder

        embedder = HashEmbedder(256)
        embed = embedder.embed_batch
    elif impl == "adapter":
        from vestige_embed import resolve_embedder
        from vestige_embed.settings.config import load_settings

        adapter = resolve_embedder(MINILM, 384, models_dir=load_settings().models_dir)
        embed = adapter.embed_batch
    else:
        from fastembed import TextEmbedding

        from vestige_embed.embedders.model_files import folder_name
        from vestige_embed.settings.config import load_settings

        folder = load_settings().models_dir / folder_name(MINILM)
        model = TextEmbedding(MINILM, specific_model_path=str(folder))

        def embed(chunk: list[str]) -> object:
            return list(model.embed(chunk, batch_size=len(chunk)))

    embed(texts[:8])  # warm-up: load and first run
    rss_loaded = peak_rss_mb()
    started = time.perf_counter()
    for i in range(0, count, batch):
        embed(texts[i : i + batch])
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    print(json.dumps({"rate": count / seconds, "rss_loaded_mb": rss_loaded, "peak_mb": peak}))


def measure(impl: str, texts_kind: str, batch: int, count: int) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", impl, texts_kind, str(batch), str(count)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, kind, batch, count = args.child
        child(impl, kind, int(batch), int(count))
        return
    counts = {"short": 256, "long": 128} if args.quick else {"short": 1536, "long": 768}
    hash_count = 2_000 if args.quick else 20_000
    print(f"cpus: {os.cpu_count()}; texts: short ~45 chars (~10 tokens), long 200 chars")
    print(f"{'embedder':28} {'texts':6} {'batch':>5} {'texts/s':>9} {'peak RSS MB':>12}")
    for kind in ("short", "long"):
        for batch in BATCHES:
            rows = {impl: measure(impl, kind, batch, counts[kind]) for impl in ("plain", "adapter")}
            for impl, label in (("plain", "plain fastembed MiniLM"), ("adapter", "FastembedEmbedder MiniLM")):
                r = rows[impl]
                print(f"{label:28} {kind:6} {batch:5d} {r['rate']:9.1f} {r['peak_mb']:12.0f}")
            ratio = rows["adapter"]["rate"] / rows["plain"]["rate"]
            print(f"{'  adapter / plain':28} {kind:6} {batch:5d} {ratio:9.2f}  {'PASS' if ratio >= 0.95 else 'FAIL'}")
        for batch in BATCHES:
            r = measure("hash", kind, batch, hash_count)
            print(f"{'HashEmbedder hash-256':28} {kind:6} {batch:5d} {r['rate']:9.0f} {r['peak_mb']:12.0f}")


if __name__ == "__main__":
    main()

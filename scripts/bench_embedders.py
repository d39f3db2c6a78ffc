"""Embedder throughput, each figure the median of alternating rounds in fresh processes.

- the fastembed adapter next to plain fastembed (all-MiniLM-L6-v2, the offline folder
  `make models` assembles) at caller batch sizes 32/128/512, on short texts (~10 tokens,
  "memory number 17 talks about rust and async") and on ~200-character texts;
- the adapter's onnxruntime threads: one against one per core, on an idle machine and
  with every core kept busy by another process (what chose the default, see README);
- vestige/hash-256 at the same batch sizes.

Each measurement runs in a fresh process, so its peak RSS is its own.
Run: `make bench` (or `make bench-quick`), or
`.venv/bin/python scripts/bench_embedders.py [--quick] [--repeats N]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _bench_common import peak_rss_mb
from _bench_stats import DEFAULT_REPEATS, alternate

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
    """One measurement in this (fresh) process; prints a JSON line. `adapter-1`: one thread."""
    texts = short_texts(count) if texts_kind == "short" else long_texts(count)
    if impl == "hash":
        from vestige_embed import HashEmbedder

        embedder = HashEmbedder(256)
        embed = embedder.embed_batch
    elif impl.startswith("adapter"):
        from vestige_embed import resolve_embedder
        from vestige_embed.settings.config import load_settings

        threads = int(impl.removeprefix("adapter-")) if impl != "adapter" else None
        adapter = resolve_embedder(MINILM, 384, models_dir=load_settings().models_dir, threads=threads)
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


def _spin() -> None:
    while True:
        pass


@contextmanager
def every_core_busy() -> Iterator[None]:
    """One spinning process per core: the machine an application (or a database) keeps busy."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(os.cpu_count() or 1)]
    for p in spinners:
        p.start()
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
            p.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one batch size (make bench-quick)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="rounds per figure (default 3)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, kind, batch, count = args.child
        child(impl, kind, int(batch), int(count))
        return
    counts = {"short": 192, "long": 96} if args.quick else {"short": 1536, "long": 768}
    batches = (128,) if args.quick else BATCHES
    hash_count = 2_000 if args.quick else 20_000
    rss: dict[str, float] = {}

    def rate(impl: str, kind: str, batch: int, count: int) -> float:
        found = measure(impl, kind, batch, count)
        rss[impl] = max(rss.get(impl, 0.0), found["peak_mb"])
        return found["rate"]

    print(f"cpus: {os.cpu_count()}  repeats: {args.repeats}  texts: short ~45 chars (~10 tokens), long 200 chars")
    print("median texts/s [lowest .. highest]; peak RSS is the highest seen")
    for kind in ("short", "long"):
        for batch in batches:
            print(f"\n{kind} texts, caller batch {batch}:")
            figures = alternate(
                {
                    "plain fastembed MiniLM": partial(rate, "plain", kind, batch, counts[kind]),
                    "FastembedEmbedder MiniLM": partial(rate, "adapter", kind, batch, counts[kind]),
                },
                args.repeats,
                "texts/s",
            )
            for figure in figures.values():
                print(figure.line(1))
            ratio = figures["FastembedEmbedder MiniLM"].median / figures["plain fastembed MiniLM"].median
            print(f"  adapter / plain: {ratio:.2f} ({'PASS' if ratio >= 0.95 else 'FAIL'}, target >= 0.95)")
    print(f"\nonnxruntime threads, FastembedEmbedder MiniLM, long texts, batch 128 (cpus: {os.cpu_count()}):")
    for label, load in (("idle machine", None), ("every core busy", every_core_busy)):
        with load() if load else nullcontext():
            figures = alternate(
                {
                    f"{label}, one per core (default)": lambda: rate("adapter", "long", 128, counts["long"]),
                    f"{label}, threads=1": lambda: rate("adapter-1", "long", 128, counts["long"]),
                },
                args.repeats,
                "texts/s",
            )
        for figure in figures.values():
            print(figure.line(1))
    print(f"\nvestige/hash-256, {hash_count} texts:")
    for kind in ("short", "long"):
        for batch in batches:
            figure = alternate(
                {f"{kind}, batch {batch}": partial(rate, "hash", kind, batch, hash_count)}, args.repeats, "texts/s"
            )
            print(figure[f"{kind}, batch {batch}"].line())
    print("\npeak RSS (MB): " + ", ".join(f"{impl} {mb:.0f}" for impl, mb in sorted(rss.items())))


if __name__ == "__main__":
    main()

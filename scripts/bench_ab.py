"""Two versions of vestige-embed in one run: the engine's figures before and after a change.

`make bench` measures one tree; this measures the engine of another checkout (`--before`,
e.g. a `git worktree` of an older commit) and of this one on the same server, the same
databases and the same rounds, alternating which goes first. Each sample runs in a fresh
process that imports only its own tree, on a fresh copy of a store at revision 0001
(vestige/hash-256), and reports the atomic run's data pass (rows/s) and its wall time:
- hashing embedder (vestige/hash-384), N rows (20,000);
- all-MiniLM-L6-v2 on M stdlib docstrings (2,000).

Run: `.venv/bin/python scripts/bench_ab.py --before /path/to/older/checkout [--rows N] [--repeats N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sqlalchemy as sa
from _bench_db import ROOT, STORE, copy_database, drop_database, memories
from _bench_stats import DEFAULT_REPEATS, Figure

from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import DEFAULT_TARGET

MINILM = "sentence-transformers/all-MiniLM-L6-v2"

#: Runs in the child, with only the tree under test importable (both versions have this API).
CHILD = """
import json, sys, time
import sqlalchemy as sa
import vestige_embed
from vestige_embed import HashEmbedder, ReembedPlan, resolve_embedder, run_reembed
url, model, models_dir = sys.argv[1:4]
if model == "hash":
    embedder = HashEmbedder(384)
else:
    from pathlib import Path
    embedder = resolve_embedder(model, 384, models_dir=Path(models_dir))
embedder.embed_batch(["warm up"])
engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
started = time.perf_counter()
with engine.connect() as conn:
    report = run_reembed(conn, embedder, ReembedPlan(batch_size=128))
    conn.commit()
secs = time.perf_counter() - started
print(json.dumps({"rate": report.rows_updated / report.data_pass_secs, "secs": secs, "module": vestige_embed.__file__}))
"""


def template(server: Any, name: str, tree: Path, texts: list[str]) -> None:
    """A store at the tree's own revision 0001 (registry shapes differ between versions),
    filled with `texts` and their hash-256 vectors (table only: 0001 registered hash-256)."""
    from vestige_embed import HashEmbedder
    from vestige_embed.settings.embedded import ensure_database, server_url

    drop_database(server, name)
    ensure_database(server, name)
    url = server_url(server, name).render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONPATH": str(tree), "VESTIGE_DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "0001"], cwd=tree, env=env, check=True, capture_output=True
    )
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    ids = [uuid.uuid4() for _ in texts]
    with engine.begin() as conn:
        conn.execute(STORE.table.insert(), [{"id": i, "content": t} for i, t in zip(ids, texts, strict=True)])
        writer = VectorWriter(conn, STORE, DEFAULT_TARGET.embedding)
        for start in range(0, len(texts), 2_000):
            writer(ids[start : start + 2_000], HashEmbedder(256).embed_batch(texts[start : start + 2_000]))
    engine.dispose()


def sample(server: Any, template: str, tree: Path, model: str, results: dict[str, list[float]]) -> float:
    engine = copy_database(server, template, "ab_sample")
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    models_dir = str((ROOT / ".vestige" / "models").resolve())
    env = {**os.environ, "PYTHONPATH": str(tree)}
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, url, model, models_dir], capture_output=True, text=True, cwd=tree, env=env
        )
        if out.returncode != 0:
            raise RuntimeError(f"{tree}: {out.stderr[-1500:]}")
        found = json.loads(out.stdout.strip().splitlines()[-1])
        if not Path(found["module"]).is_relative_to(tree):
            raise RuntimeError(f"the child imported {found['module']}, not the tree under test {tree}")
    finally:
        drop_database(server, "ab_sample")
    results.setdefault(str(tree), []).append(found["secs"])
    return float(found["rate"])


def compare(server: Any, label: str, texts: list[str], model: str, trees: dict[str, Path], repeats: int) -> None:
    for name, tree in trees.items():
        template(server, f"ab_{name}", tree, texts)
    rates = {name: Figure(f"{name}: data pass", "rows/s") for name in trees}
    walls: dict[str, list[float]] = {}
    names = list(trees)
    for r in range(repeats):
        for name in names[r % 2 :] + names[: r % 2]:
            rates[name].values.append(sample(server, f"ab_{name}", trees[name], model, walls))
    print(f"\n{label}:")
    for name in names:
        print(rates[name].line())
        print(Figure(f"{name}: whole run", "s", walls[str(trees[name])]).line(2))
    ratio = rates["after"].median / rates["before"].median
    print(f"  after / before (data pass medians): {ratio:.2f} ({'not worse' if ratio >= 0.95 else 'WORSE'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the older checkout (its root folder)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--minilm-rows", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    args = parser.parse_args()
    from vestige_embed.demo.corpus import stdlib_docs
    from vestige_embed.settings.embedded import start_server

    trees = {"before": args.before.resolve(), "after": ROOT}
    print(f"before: {trees['before']}  after: {ROOT}  cpus: {os.cpu_count()}  repeats: {args.repeats}")
    with (
        tempfile.TemporaryDirectory(prefix="vestige-bench-ab-") as tmp,
        start_server(Path(tmp) / "pgdata") as server,
    ):
        docs = [d.content for d in stdlib_docs()][: args.minilm_rows]
        run = partial(compare, server, trees=trees, repeats=args.repeats)
        run(f"hashing embedder, {args.rows} rows", memories(args.rows), "hash")
        run(f"all-MiniLM-L6-v2, {len(docs)} stdlib docstrings", docs, MINILM)


if __name__ == "__main__":
    main()

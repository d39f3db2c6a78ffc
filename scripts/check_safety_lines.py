"""Each safety line, removed in turn: the tests that guard it must fail. The file is put back.

Run: `.venv/bin/python scripts/check_safety_lines.py [NAME ...]` (default: every line).
Prints one line per safety line: what the guarding tests said with it removed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEVER_MIXED = "tests/test_never_mixed.py"

#: name: (file, the line(s) as they are, what they become, the tests that must fail)
LINES: dict[str, tuple[str, str, str, str]] = {
    "table lock (in place, atomic and batched)": (
        "vestige_embed/run/engine.py",
        "    run.set_transaction_settings()\n    steps.lock_out_writers(run)\n    steps.open_window(run)",
        "    run.set_transaction_settings()\n    steps.open_window(run)",
        f"{NEVER_MIXED} -k 'atomic or batched or same_size'",
    ),
    "table lock (staged swap)": (
        "vestige_embed/run/engine.py",
        "    run.set_transaction_settings()\n    steps.lock_out_writers(run)\n    embedded = steps.catch_up(run)",
        "    run.set_transaction_settings()\n    embedded = steps.catch_up(run)",
        f"{NEVER_MIXED} -k swap",
    ),
    "catch-up (in place)": (
        "vestige_embed/run/steps.py",
        "        embedded = _embed_rows(run, column, remaining, expected)",
        "        embedded = 0 if remaining is not None else _embed_rows(run, column, remaining, expected)",
        f"{NEVER_MIXED} -k 'batched and in_place'",
    ),
    "catch-up (staged swap)": (
        "vestige_embed/run/engine.py",
        "    embedded = steps.catch_up(run)",
        "    embedded = 0",
        f"{NEVER_MIXED} -k swap",
    ),
    "CONCURRENTLY": (
        "vestige_embed/run/steps.py",
        "        run.conn.execute(run.st.create_index(column, name=name, concurrently=True))",
        "        run.conn.execute(run.st.create_index(column, name=name))",
        f"{NEVER_MIXED} -k builds_its_index",
    ),
    "index build settings applied": (
        "vestige_embed/run/steps.py",
        "        shown = [run.conn.execute(s).scalar() for s in settings]",
        "        shown = ['?', '?']",
        f"{NEVER_MIXED} -k memory_setting",
    ),
    "offline script's table lock": (
        "vestige_embed/run/offline.py",
        "        st.lock(),\n",
        "",
        f"{NEVER_MIXED} -k offline",
    ),
    "one run per target": (
        "vestige_embed/run/engine.py",
        "        with idle_while_embedding(conn), run_lock(conn, target, description, transaction=not ahead):",
        "        with idle_while_embedding(conn), contextlib.nullcontext():",
        f"{NEVER_MIXED} -k second_run",
    ),
    "staged model announced to writers": (
        "vestige_embed/run/staging.py",
        "        conn.execute(st.set_staged_model(signature))",
        "        pass",
        f"{NEVER_MIXED} -k offline_script_with",
    ),
    "shared-memory retry without workers": (
        "vestige_embed/run/steps.py",
        '            if not short or shown[1] == "0":',
        "            if True:",
        "tests/test_index_build.py -k shared_memory",
    ),
    "statement_timeout off": (
        "vestige_embed/run/context.py",
        '            "statement_timeout": "0",\n',
        "",
        "tests/test_index_build.py -k statement_timeout",
    ),
    "drift re-embeds instead of nothing to do": (
        "vestige_embed/run/engine.py",
        "    return column is None or column == signature.dimension",
        "    return True",
        "tests/test_drift.py",
    ),
    "search refuses drifted vectors by name": (
        "vestige_embed/store/search.py",
        '        if getattr(e.orig, "sqlstate", None) != _DATA_EXCEPTION:',
        "        if True:",
        "tests/test_drift.py -k search",
    ),
    "alter rights checked before any work": (
        "vestige_embed/run/engine.py",
        "    catalog.require_alter_rights(conn, Statements(target))\n",
        "",
        "tests/test_rights.py",
    ),
    "UTF-8 client encoding": (
        "vestige_embed/settings/urls.py",
        '    args = {"client_encoding": CLIENT_ENCODING}',
        "    args: dict[str, str] = {}",
        "tests/test_cli.py -k ascii",
    ),
    "idle-in-transaction timeout off": (
        "vestige_embed/run/context.py",
        '    conn.execute(set_setting(IDLE_TIMEOUT, "0", local=False))\n',
        "",
        "tests/test_index_build.py -k idle",
    ),
    "a killed run's statement stops (client check)": (
        "vestige_embed/run/context.py",
        "            CLIENT_CHECK_SETTING: CLIENT_CHECK_INTERVAL,\n",
        "",
        "tests/test_kill_points.py -k long",
    ),
    "downgrade past the base keeps the rows unless told": (
        "migrations/versions/0001_base_schema.py",
        "    refuse_dropping_rows(_target)  # stored memories go only when the operator says so\n",
        "",
        "tests/test_base_revision.py -k refuses",
    ),
    "adoption refuses vectors that are not the claimed model's": (
        "vestige_embed/run/adopt.py",
        "    if similarity < MIN_SIMILARITY:\n",
        "    if False:\n",
        "tests/test_adopt.py -k 'wrong_model or other_content'",
    ),
    "adoption refuses a column of another size": (
        "vestige_embed/run/adopt.py",
        "    if dimension is not None and dimension != signature.dimension:\n",
        "    if False:\n",
        "tests/test_adopt.py -k another_size",
    ),
    "an upgrade refuses model files other than the pinned": (
        "vestige_embed/alembic/ops.py",
        "    if found == operation.model_hash:\n",
        "    if True:\n",
        "tests/test_alembic_revisions.py -k other_model_files",
    ),
    "the signature covers tokenizer and config": (
        "vestige_embed/embedders/model_files.py",
        "    for name in SIGNED_FILES:\n",
        "    for name in ():\n",
        "tests/test_embedders.py -k tokenizer_and_config",
    ),
    "writers stage nothing without a staging table": (
        "vestige_embed/target/statements.py",
        "        return staged.where(self._registry_row(), self.staging_exists().scalar_subquery())\n",
        "        return staged.where(self._registry_row())\n",
        "tests/test_staging.py -k nothing_to_stage",
    ),
    "Ray: the driver checks every row is staged": (
        "vestige_embed/run/distributed.py",
        "    if missing > inserted:\n",
        "    if False:\n",
        "tests/test_ray_staging.py -k loses",
    ),
    "Ray: a worker with other model files is refused": (
        "vestige_embed/run/distributed.py",
        "        if found != signature:\n",
        "        if False:\n",
        "tests/test_ray_staging.py -k model_files_differ",
    ),
    "dedupe: the locked pass reads rows by content": (
        "vestige_embed/target/statements.py",
        "        order = (content,) if by_content else ()\n",
        "        order = ()\n",
        "tests/test_dedupe.py",
    ),
    "address writes: only under a lock that keeps other sessions from writing": (
        "vestige_embed/target/statements.py",
        "        stay = sa.and_(\n            held,\n",
        "        stay = sa.and_(\n",
        "tests/test_row_addresses.py -k without_the_table_lock",
    ),
    "address writes: only in a plain table": (
        "vestige_embed/target/statements.py",
        '            c.relkind == "r",\n',
        "",
        "tests/test_row_addresses.py -k view",
    ),
    "address writes: only in a table without children": (
        "vestige_embed/target/statements.py",
        "            sa.not_(c.relhassubclass),\n",
        "",
        "tests/test_row_addresses.py -k child_table",
    ),
    "address writes: not where an UPDATE trigger may move rows": (
        "vestige_embed/target/statements.py",
        "            sa.not_(update_trigger),\n",
        "",
        "tests/test_row_addresses.py -k trigger_moves",
    ),
    "pipelined pass: the next chunk is fetched while a full one is embedded": (
        "vestige_embed/store/pipelined.py",
        "            if len(rows) == chunk:",
        "            if len(rows) == chunk and False:",
        "tests/test_pipelined_pass.py -k many_fetched_chunks",
    ),
    "pipelined pass: an error answered at the end is raised": (
        "vestige_embed/store/pipelined.py",
        "            if error is None:\n                raise _as_sqlalchemy(e, self.sql) from e\n",
        "            pass\n",
        "tests/test_pipelined_pass.py -k refuses",
    ),
    "pipelined pass: a refused write fails the run as a database error": (
        "vestige_embed/store/pipelined.py",
        "        if isinstance(error, psycopg.Error):\n",
        "        if False:\n",
        "tests/test_pipelined_pass.py -k refuses",
    ),
    "every row the locked pass read was updated (a trigger may skip some)": (
        "vestige_embed/run/pipeline.py",
        "    if rows.rows_written != rows.rows_read:",
        "    if False:",
        f"{NEVER_MIXED} -k trigger_that_skips",
    ),
    "rows whose staged vector was not applied are embedded": (
        "vestige_embed/run/steps.py",
        "            remaining = sa.not_(run.st.holds_fresh_staged(run.signature, column))",
        "            remaining = sa.not_(run.st.fresh_staged(run.signature))",
        f"{NEVER_MIXED} -k 'trigger_that_skips and applying_staged'",
    ),
}


def check(name: str) -> str:
    path, line, replacement, tests = LINES[name]
    file = ROOT / path
    text = file.read_text()
    if text.count(line) != 1:
        return f"{name}: the line is not in {path} exactly once; update this script"
    file.write_text(text.replace(line, replacement))
    try:
        result = subprocess.run(
            f"{sys.executable} -m pytest -q {tests}", shell=True, capture_output=True, text=True, cwd=ROOT, timeout=900
        )
    finally:
        file.write_text(text)
    summary = [row for row in result.stdout.splitlines() if " passed" in row or " failed" in row]
    verdict = "caught" if result.returncode != 0 else "NOT CAUGHT"
    return f"{name}: removed -> {summary[-1] if summary else result.stdout[-200:]}  ({verdict})"


if __name__ == "__main__":
    for name in sys.argv[1:] or list(LINES):
        print(check(name), flush=True)

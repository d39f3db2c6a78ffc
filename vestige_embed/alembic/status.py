"""The Alembic half of `vestige migrate status`: where the database is in the history, and
whether the registry holds the model that place in the history says it should."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from vestige_embed.alembic.revision import model_at
from vestige_embed.target import DEFAULT_TARGET, Target


def alembic_status(
    conn: Connection, config_path: Path, target: Target, registry_model: str | None
) -> tuple[dict[str, Any], list[str]]:
    """`({"current", "head", "model"}, problems)`. `registry_model` is what `target` holds now
    (None when it is not registered)."""
    currents = MigrationContext.configure(conn).get_current_heads()
    current = ", ".join(currents) if currents else None
    found: dict[str, Any] = {"current": current}
    if not config_path.is_file():
        return found, [f"{config_path} not found: run from the project folder or pass --config to compare with it"]
    script = ScriptDirectory.from_config(Config(str(config_path)))
    heads = script.get_heads()
    found["head"] = ", ".join(heads)
    if not currents:
        return found, [] if not heads else ["this database has no Alembic revision yet: run `alembic upgrade head`"]
    problems: list[str] = []
    for revision in currents:
        try:
            script.get_revision(revision)
        except CommandError:
            problems.append(
                f"the database is at revision {revision}, which {script.dir} does not have: run status (and "
                "alembic) from the project that upgraded it (--config), or restore the missing revision file"
            )
            return found, problems
    if len(currents) == 1:
        declared = model_at(script, currents[0], target.table, target.embedding)
        found["model"] = None if declared is None else declared.model
        if declared is not None and registry_model is not None and declared.model != registry_model:
            table = "" if target.table == DEFAULT_TARGET.table else f" --table {target.table}"
            problems.append(
                f"the registry holds {registry_model}, but revision {currents[0]} leaves {target.describe()} on "
                f"{declared.model} (changed since by `vestige migrate reembed`?): the next upgrade or downgrade "
                f"starts from the wrong model. Re-embed back (`vestige migrate reembed{table} --model "
                f"{declared.model} --dimension {declared.dimension}`) or record the change "
                f"(`vestige migrate revision{table} --model {registry_model}`)"
            )
    if set(currents) != set(heads):
        problems.append(f"revisions {', '.join(heads)} not applied yet: run `alembic upgrade head`")
    return found, problems

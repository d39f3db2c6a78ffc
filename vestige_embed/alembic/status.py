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


def alembic_status(conn: Connection, config_path: Path, registry_model: str | None) -> tuple[dict[str, Any], list[str]]:
    """`({"current", "head", "model"}, problems)`. `registry_model` is what the store holds now
    (None to skip that comparison: another target than the one revisions change)."""
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
        declared = model_at(script, currents[0])
        found["model"] = None if declared is None else declared[0]
        if declared is not None and registry_model is not None and declared[0] != registry_model:
            problems.append(
                f"the registry holds {registry_model}, but revision {currents[0]} leaves the store on "
                f"{declared[0]} (changed since by `vestige migrate reembed`?): the next upgrade or downgrade "
                f"starts from the wrong model. Re-embed back (`vestige migrate reembed --model {declared[0]} "
                f"--dimension {declared[1]}`) or record the change "
                f"(`vestige migrate revision --model {registry_model}`)"
            )
    if set(currents) != set(heads):
        problems.append(f"revisions {', '.join(heads)} not applied yet: run `alembic upgrade head`")
    return found, problems

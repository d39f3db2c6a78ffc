"""`vestige migrate revision`: a model change written as a revision by Alembic's own machinery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory

from vestige_embed.embedders import resolve_embedder
from vestige_embed.errors import ConfigError
from vestige_embed.settings.config import load_settings, project_folder


def head_model(script: ScriptDirectory) -> tuple[str, int, str]:
    """`(model, dimension, head revision)`: the model the newest revision leaves the store on."""
    heads = script.get_heads()
    if len(heads) != 1:
        raise ConfigError(f"the script directory has {len(heads)} heads ({', '.join(heads)}); merge them first")
    found = model_at(script, heads[0])
    if found is None:
        raise ConfigError("no revision in the history declares `embedding_model`; is 0001 (the base schema) there?")
    return found[0], found[1], heads[0]


def model_at(script: ScriptDirectory, revision: str) -> tuple[str, int] | None:
    """`(model, dimension)` the store is on at `revision`: the nearest revision at or below it
    that declares `embedding_model`; None when none does."""
    for rev in script.walk_revisions("base", revision):
        module: Any = rev.module
        if hasattr(module, "embedding_model"):
            return str(module.embedding_model), int(module.embedding_dimension)
    return None


def docstring_safe(message: str) -> str:
    r"""The message as it may stand in the revision's docstring, on one line: backslashes
    and double quotes escaped, so `C:\Users\new` or three quotes cannot break the file."""
    one_line = " ".join(message.split())
    return one_line.replace("\\", "\\\\").replace('"', '\\"')


def next_revision_id(head: str) -> str:
    """Sequential ids (0001, 0002, ...) while the history uses them."""
    if head.isdigit():
        return f"{int(head) + 1:0{len(head)}d}"
    import uuid

    return uuid.uuid4().hex[:12]


def write_model_revision(config: Config, model: str, dimension: int | None, message: str | None) -> Path:
    """Write the revision; everything is validated before the file exists."""
    settings = load_settings(project=project_folder(config.config_file_name))
    embedder = resolve_embedder(model, dimension, models_dir=settings.models_dir)
    script = ScriptDirectory.from_config(config)
    previous, previous_dimension, head = head_model(script)
    if previous == model:
        raise ConfigError(f"the head revision {head} already leaves the store on {model}; nothing to change")
    created = script.generate_revision(
        next_revision_id(head),
        docstring_safe(message or f"re-embed with {model.rsplit('/', 1)[-1]}"),
        head=head,
        embedding_model=model,
        embedding_dimension=embedder.dimension,
        previous_embedding_model=previous,
        previous_embedding_dimension=previous_dimension,
    )
    assert created is not None
    return Path(created.path)

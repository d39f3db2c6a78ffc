"""`vestige migrate revision` and `adopt`: model changes written as revisions into any
Alembic project, by Alembic's own machinery (file name, post-write hooks) and the
package's template (the project's `script.py.mako` is for its own revisions).

A written revision declares what it leaves each column on (`embedding_target`,
`embedding_model`), so the next revision knows the model it changes from.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory

from vestige_embed.embedders import Embedder, resolve_embedder
from vestige_embed.errors import ConfigError, ModelLoadError
from vestige_embed.settings.config import load_settings, project_folder
from vestige_embed.target import DEFAULT_TARGET, Target

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).parent / "templates" / "model_change.py.mako"
#: Target fields a revision always writes; the others only where they differ from the default.
_ALWAYS = ("table", "key", "content", "embedding")
_WHEN_GIVEN = ("storage", "distance")


@dataclass(frozen=True)
class Declared:
    """What a revision leaves one column on."""

    revision: str
    target: dict[str, Any]
    model: str
    dimension: int
    model_hash: str | None

    @property
    def operation(self) -> dict[str, Any]:
        """`op.reembed`'s model keywords for this model."""
        return {"model": self.model, "dimension": self.dimension, "model_hash": self.model_hash}


def declared(revision: str, module: Any) -> Declared | None:
    """What `module` declares; vestige-embed 0.2's own revisions (`embedding_model` a name,
    `embedding_dimension` beside it) are of the default target."""
    model = getattr(module, "embedding_model", None)
    if isinstance(model, dict):
        return Declared(
            revision,
            dict(module.embedding_target),
            str(model["model"]),
            int(model["dimension"]),
            model.get("model_hash"),
        )
    if isinstance(model, str):
        return Declared(revision, target_fields(DEFAULT_TARGET), model, int(module.embedding_dimension), None)
    return None


def target_fields(target: Target) -> dict[str, Any]:
    """The target as `op.reembed` keywords, in the order a person reads them."""
    given = target.to_json()
    fields: dict[str, Any] = {name: str(given[name]) for name in _ALWAYS}
    fields |= {name: str(given[name]) for name in _WHEN_GIVEN if given[name] != DEFAULT_TARGET.to_json()[name]}
    if Target(**fields).index != target.index:
        fields["index"] = target.index
    return fields


def _same_column(found: dict[str, Any], table: str, embedding: str | None) -> bool:
    key = Target(**found).registry_key
    wanted = Target(table=table).registry_key[0]
    return key[0] == wanted and (embedding is None or key[1] == embedding)


def model_at(
    script: ScriptDirectory, revision: str, table: str = DEFAULT_TARGET.table, embedding: str | None = None
) -> Declared | None:
    """What the nearest revision at or below `revision` that declares a model for `table`
    (and `embedding`, when given) leaves it on; None when none does."""
    for rev in script.walk_revisions("base", revision):
        found = declared(rev.revision, rev.module)
        if found is not None and _same_column(found.target, table, embedding):
            return found
    return None


def single_head(script: ScriptDirectory) -> str:
    heads = script.get_heads()
    if len(heads) != 1:
        raise ConfigError(
            f"the script directory has {len(heads)} heads ({', '.join(heads) or 'none'}); "
            + ("merge them first (`alembic merge heads`)" if heads else "write its base revision first")
        )
    return heads[0]


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


def pinned_hash(embedder: Embedder) -> str | None:
    """The model files' hash, or None (with a warning saying how to fix it) when the model
    cannot be loaded on this machine: the revision is written unpinned."""
    try:
        return embedder.signature().hash
    except ModelLoadError as e:
        log.warning(
            "warning: %s could not be loaded here, so the revision does not pin its files (model_hash "
            "None): %s. Make it available on this machine and write the revision again to pin them",
            embedder.name,
            e,
        )
        return None


def write_model_revision(
    config: Config,
    model: str,
    dimension: int | None,
    message: str | None,
    *,
    table: str = DEFAULT_TARGET.table,
    embedding: str | None = None,
) -> Path:
    """A revision that re-embeds `table` with `model`; everything is checked before the file exists."""
    script = ScriptDirectory.from_config(config)
    head = single_head(script)
    previous = model_at(script, head, table, embedding)
    if previous is None:
        raise ConfigError(
            f"no revision of {config.config_file_name} declares a model for {table}"
            + (f".{embedding}" if embedding else "")
            + ": adopt its vectors first (`vestige migrate adopt --table ...`)"
        )
    embedder = _embedder(config, model, dimension)
    model_hash = pinned_hash(embedder)
    if previous.model == model and previous.model_hash in (None, model_hash):
        raise ConfigError(f"revision {previous.revision} already leaves {table} on {model}: nothing to change")
    return _write(
        config,
        script,
        head,
        message or ("re-embed {table} with {model}", "{table} to {model}", "re-embed with {model}"),
        Target(**previous.target),
        embedder,
        model_hash,
        kind="reembed",
        embedding_target=previous.target,
        previous_embedding_model=previous.operation,
    )


def write_adopt_revision(config: Config, target: Target, model: str, dimension: int, message: str | None) -> Path:
    """A revision that adopts `target`'s existing vectors as `model`'s."""
    script = ScriptDirectory.from_config(config)
    head = single_head(script)
    found = model_at(script, head, target.table, target.embedding)
    if found is not None:
        raise ConfigError(
            f"revision {found.revision} already declares {target.describe()} (on {found.model}); "
            "change its model with `vestige migrate revision`"
        )
    embedder = _embedder(config, model, dimension)
    return _write(
        config,
        script,
        head,
        message or ("adopt {table} on {model}", "adopt {table}", "adopt"),
        target,
        embedder,
        pinned_hash(embedder),
        kind="adopt",
        embedding_target=target_fields(target),
    )


def _fitting(script: ScriptDirectory, messages: tuple[str, ...], target: Target, model: str) -> str:
    """The first default message whose file-name slug Alembic keeps whole (a cut slug ends in `_`)."""
    values = {"table": target.table_name, "model": model.rsplit("/", 1)[-1]}
    for message in (m.format(**values) for m in messages):
        if len("_".join(re.findall(r"\w+", message))) <= script.truncate_slug_length:
            return message
    return messages[-1].format(**values)


def _embedder(config: Config, model: str, dimension: int | None) -> Embedder:
    """The model by name and size; unknown names and wrong sizes stop here, before any file."""
    settings = load_settings(project=project_folder(config.config_file_name))
    return resolve_embedder(model, dimension, models_dir=settings.models_dir)


def _write(
    config: Config,
    script: ScriptDirectory,
    head: str,
    message: str | tuple[str, ...],
    target: Target,
    embedder: Embedder,
    model_hash: str | None,
    **context: Any,
) -> Path:
    """Alembic's `generate_revision` (file name, version folder, post-write hooks), rendered
    from the package's template. `message`: the operator's, or default messages to choose from."""
    if not isinstance(message, str):
        message = _fitting(script, message, target, embedder.name)
    context["embedding_model"] = {"model": embedder.name, "dimension": embedder.dimension, "model_hash": model_hash}
    render = script._generate_template

    def from_package_template(src: Path, dest: Path, **kw: Any) -> None:
        render(TEMPLATE, dest, **kw)

    script._generate_template = from_package_template  # type: ignore[method-assign]
    created = script.generate_revision(next_revision_id(head), docstring_safe(message), head=head, **context)
    if created is None:
        raise ConfigError(f"alembic wrote no revision into {config.get_main_option('script_location')}")
    return Path(created.path)

"""The offline (`alembic upgrade --sql`) form of a model change: a script a DBA runs with
`psql -v ON_ERROR_STOP=1`.

Embeddings cannot be computed in SQL, so the script applies vectors staged beforehand
by `vestige migrate stage`. After taking the table lock, a guard checks that every row
has a fresh staged vector of the right size before anything changes; the rest is what
the online path does, statement for statement, from the same statement builder.
"""

from __future__ import annotations

import shlex
from dataclasses import replace

import sqlalchemy as sa

from vestige_embed.errors import StagingError
from vestige_embed.run.build_settings import index_build_settings
from vestige_embed.run.plan import ReembedPlan
from vestige_embed.target import DEFAULT_TARGET, ModelSignature, ModelState, Statements, Target
from vestige_embed.target.ddl import Comment, WhenTrue
from vestige_embed.target.statements import (
    CLIENT_CHECK_INTERVAL,
    CLIENT_CHECK_SETTING,
    TABLE_LOCK_MODE,
    create_registry,
    set_setting,
)

#: Target fields that `vestige migrate stage` takes as options of the same name.
_CLI_OPTIONS = ("table", "key", "content", "embedding", "storage", "distance", "index")


def stage_command(target: Target, signature: ModelSignature) -> str:
    """The command that stages for this target (its options only where they differ from the default)."""
    given, default = target.to_json(), DEFAULT_TARGET.to_json()
    default["index"] = replace(target, index="").index  # the name it would get anyway
    options = [f"--{name} {shlex.quote(str(given[name]))}" for name in _CLI_OPTIONS if given[name] != default[name]]
    model = f"--model {shlex.quote(signature.name)} --dimension {signature.dimension}"
    return " ".join(["vestige migrate stage", *options, model])


def header(target: Target, signature: ModelSignature, plan: ReembedPlan) -> Comment:
    lines = [
        f"vestige-embed: re-embed {target.describe()} with {signature.describe()}",
        f"model hash {signature.hash}",
        "",
        "Run with psql -v ON_ERROR_STOP=1 -f this-script.sql",
        "Before running it, stage the new vectors (search keeps working meanwhile):",
        f"    {stage_command(target, signature)}",
        "The guard below stops the script, before any change, if a row has no fresh staged vector.",
        "",
        f"Locks: {TABLE_LOCK_MODE} on {target.table} first (writes wait, search goes on), then ACCESS",
        "EXCLUSIVE from the DROP INDEX to the end of the transaction (search is down, writes wait);",
        f"lock_timeout {plan.lock_timeout} makes the script fail instead of queueing behind long transactions.",
        f"The registry names the new model ({ModelState.READY.value}) when the transaction commits;",
        "applications that follow vestige-embed's write contract wait for it.",
    ]
    return Comment(lines)


def offline_reembed_script(target: Target, signature: ModelSignature, plan: ReembedPlan) -> list[sa.Executable]:
    """The statements of the offline model change, in the order the online path runs them.

    What the online path decides from the catalog (keep the index when asked to and the
    size stays; relax and tighten on a change of size, and whenever the index is dropped,
    so the tightening's rewrite leaves only the new rows for the index build) the script
    decides when it runs.
    """
    if plan.concurrent_index:
        raise StagingError(
            "op.reembed(concurrent_index=True) cannot be printed as a script: CREATE INDEX CONCURRENTLY runs "
            "outside the script's transaction, so the swap it prepares could not be checked and applied "
            "atomically. Run it online (alembic upgrade head), or print the script from a revision without "
            "concurrent_index"
        )
    st = Statements(target)
    differs = st.typmod_differs(signature.dimension)
    drop = st.drop_index() if plan.drop_hnsw_first else WhenTrue(differs, st.drop_index())
    relax = st.relax() if plan.drop_hnsw_first else WhenTrue(differs, st.relax())
    tighten = (
        st.tighten(signature.dimension) if plan.drop_hnsw_first else WhenTrue(differs, st.tighten(signature.dimension))
    )
    return [
        header(target, signature, plan),
        set_setting("lock_timeout", plan.lock_timeout),
        set_setting("statement_timeout", "0"),
        set_setting(CLIENT_CHECK_SETTING, CLIENT_CHECK_INTERVAL),
        st.lock(),
        st.offline_guard(signature, stage_command(target, signature)),
        *create_registry(),
        drop,
        relax,
        st.apply_staged(signature),
        tighten,
        *index_build_settings(plan, st, None, signature.dimension),
        st.create_index(if_not_exists=True),
        st.analyze(),
        st.release_staged(signature),
        st.register_model(signature),
    ]


def offline_adopt_script(target: Target, signature: ModelSignature) -> list[sa.Executable]:
    """An adoption as a script: registry, registration, index. Unlike the online upgrade it
    cannot check that the stored vectors are the model's: the header says so."""
    st = Statements(target)
    return [
        Comment(
            [
                f"vestige-embed: adopt {target.describe()} as {signature.describe()}",
                f"model hash {signature.hash}",
                "A script cannot embed: the claim that the stored vectors are this model's is NOT checked",
                "here (`alembic upgrade head` checks a sample before registering). An existing HNSW index",
                f"on the column under another name is not taken over: {target.index} is built beside it.",
            ]
        ),
        *create_registry(),
        st.insert_registry(signature),
        *index_build_settings(ReembedPlan(), st, None, signature.dimension),
        st.create_index(if_not_exists=True),
    ]

"""Settings, resolved once: explicit value, then environment, then alembic.ini, then default.

This is the only module that reads environment variables; everything else gets a
`Settings` (or plain values) passed in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vestige_embed.errors import ConfigError
from vestige_embed.settings.urls import normalize_url

DATABASE_URL_ENV = "VESTIGE_DATABASE_URL"
PGDATA_ENV = "VESTIGE_PGDATA"
MODELS_DIR_ENV = "VESTIGE_MODELS_DIR"
EMBED_THREADS_ENV = "VESTIGE_EMBED_THREADS"
PREBUILD_INDEX_ENV = "VESTIGE_EMBED_PREBUILD_INDEX"
EMBED_DEVICE_ENV = "VESTIGE_EMBED_DEVICE"
#: Where a model runs (the fastembed adapter's choices; `auto`: CUDA when onnxruntime has it).
EMBED_DEVICES = ("auto", "cpu", "cuda")
STATE_DIR = Path(".vestige")
DEFAULT_PGDATA = STATE_DIR / "pgdata"
DEFAULT_MODELS_DIR = STATE_DIR / "models"


@dataclass(frozen=True)
class Settings:
    """Where the database and the model files are.

    `database_url` is None when no server was named: the embedded server is used.
    `embed_threads` caps a model's onnxruntime threads (None: one per core); on a machine
    that also runs the database or the application, fewer threads leave them CPU.
    `embed_device` (`auto`, `cpu`, `cuda`) is where it runs; None leaves it to the revision or `auto`.
    `prebuild_index` False keeps the index build inside the window even when staging
    covers the store (the operator's word over a revision's).
    """

    database_url: str | None
    pgdata: Path
    models_dir: Path
    embed_threads: int | None = None
    embed_device: str | None = None
    prebuild_index: bool = True


def project_folder(ini_file: str | Path | None) -> Path | None:
    """The folder of the project's alembic.ini: where `.vestige/` belongs, wherever the
    command runs from. None without an existing file."""
    if ini_file is None or not Path(ini_file).is_file():
        return None
    return Path(ini_file).resolve().parent


def load_settings(
    *,
    database_url: str | None = None,
    ini_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    project: Path | None = None,
) -> Settings:
    """Resolve settings: `database_url` (a flag), then the environment, then alembic.ini.
    The default folders are the project's (`project`, the alembic.ini folder), else the
    current folder's; folders given in the environment are taken as the shell gives them."""
    env = os.environ if environ is None else environ
    if DATABASE_URL_ENV in env and not env[DATABASE_URL_ENV].strip() and not database_url:
        raise ConfigError(
            f"{DATABASE_URL_ENV} is set but empty; give it a URL (postgresql://user@host/dbname), "
            "or unset it to use alembic.ini's sqlalchemy.url or the embedded server"
        )
    url = database_url or env.get(DATABASE_URL_ENV) or ini_url or None
    return Settings(
        database_url=normalize_url(url) if url else None,
        pgdata=_folder(env.get(PGDATA_ENV), DEFAULT_PGDATA, project),
        models_dir=_folder(env.get(MODELS_DIR_ENV), DEFAULT_MODELS_DIR, project),
        embed_threads=parse_threads(env.get(EMBED_THREADS_ENV), EMBED_THREADS_ENV),
        embed_device=parse_device(env.get(EMBED_DEVICE_ENV), EMBED_DEVICE_ENV),
        prebuild_index=parse_switch(env.get(PREBUILD_INDEX_ENV), PREBUILD_INDEX_ENV, default=True),
    )


def _folder(given: str | None, default: Path, project: Path | None) -> Path:
    if given:
        return Path(given).absolute()
    return (project / default) if project is not None else default.absolute()


def parse_device(value: str | None, source: str) -> str | None:
    """A device name from the environment (`source` names it); empty means not set."""
    if value is None or not value.strip():
        return None
    device = value.strip().lower()
    if device not in EMBED_DEVICES:
        raise ConfigError(f"{source} must be one of {', '.join(EMBED_DEVICES)} (got '{value}')")
    return device


_SWITCH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def parse_switch(value: str | None, source: str, *, default: bool) -> bool:
    """On or off from the environment (`source` names it); unset or empty means `default`."""
    if value is None or not value.strip():
        return default
    try:
        return _SWITCH[value.strip().lower()]
    except KeyError:
        raise ConfigError(f"{source} must be 1 or 0 (also true/false, yes/no, on/off), got '{value}'") from None


def parse_threads(value: str | None, source: str) -> int | None:
    """A thread count from the environment (`source` names it); empty means onnxruntime's default."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(
            f"{source} must be a whole number of threads, 1 or more (got '{value}'); unset it for one thread per core"
        )
    return int(text)


def resolve_database_url(settings: Settings, *, create: bool = True) -> str:
    """The URL to connect to, starting the embedded server when none was configured.
    `create=False` (read-only commands) refuses to make a new, empty embedded cluster."""
    if settings.database_url is not None:
        return settings.database_url
    if not create and not (settings.pgdata / "PG_VERSION").is_file():
        raise ConfigError(
            f"no database configured ({DATABASE_URL_ENV}, --postgres-url or sqlalchemy.url in alembic.ini), "
            f"and the embedded server has no data in {settings.pgdata}: set the URL of your database, or "
            "run `vestige demo` first to try the embedded one. Nothing was created"
        )
    from vestige_embed.settings.embedded import embedded_database_url

    return embedded_database_url(settings.pgdata)

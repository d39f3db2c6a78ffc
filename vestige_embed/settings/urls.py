"""Database URLs: the one driver vestige-embed uses, and how a URL may be printed."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from vestige_embed.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

# sqlalchemy is imported where a URL is parsed: `vestige --help` never pays for it.

DRIVER = "postgresql+psycopg"
LIBPQ_SCHEME = "postgresql"
#: Text is decoded as UTF-8 on every connection: a SQL_ASCII database would hand psycopg
#: bytes, which SQLAlchemy cannot read (it fails on the server's version string).
CLIENT_ENCODING = "UTF8"


def connect_args(lock_timeout: str | None = None) -> dict[str, str]:
    """psycopg's connection arguments for every engine vestige-embed (and its env.py) creates."""
    args = {"client_encoding": CLIENT_ENCODING}
    if lock_timeout:
        args["options"] = f"-c lock_timeout={lock_timeout}"
    return args


_ACCEPTED_SCHEMES = {"postgres", LIBPQ_SCHEME, DRIVER}


def normalize_url(url: str) -> str:
    """Return the URL with the psycopg 3 driver; refuse other drivers and other databases."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise ConfigError(f"database URL is not a valid URL ({e}); expected postgresql://user@host:5432/dbname") from e
    if parsed.drivername not in _ACCEPTED_SCHEMES:
        raise ConfigError(
            f"database URL uses driver '{parsed.drivername}'; vestige-embed needs PostgreSQL "
            f"through psycopg 3: write it as {DRIVER}://... or postgresql://..."
        )
    return parsed.set(drivername=DRIVER).render_as_string(hide_password=False)


#: Query parameters libpq reads a secret from (`postgresql://app@/db?password=...`).
_SECRET_PARAMETERS = frozenset({"password", "sslpassword", "passfile"})
_MASK = "***"


def redact(url: str | URL) -> str:
    """The URL as it may be printed: never with its password, in the user part or the query;
    in libpq's form (no `+psycopg`), so `psql` and `pg_dump` take it as printed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable database URL>"
    if parsed.drivername == DRIVER:
        parsed = parsed.set(drivername=LIBPQ_SCHEME)
    hidden = {k: _MASK for k in parsed.query if k.lower() in _SECRET_PARAMETERS}
    rendered = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return rendered.replace(quote(_MASK, safe=""), _MASK)

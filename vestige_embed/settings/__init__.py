"""Settings resolved once (flag, environment, alembic.ini, default) and the embedded server.
The surfaces (CLI, Alembic) read them and pass plain values down."""

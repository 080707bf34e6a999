"""Alembic environment. Programmatic use (rawinfer.tenancy.migrations.upgrade) hands a connection
in `config.attributes["connection"]`; the command line takes `-x url=...`, else `sqlalchemy.url`,
else RAWINFER_DATABASE_URL / the default from Settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from rawinfer.tenancy.tables import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        from rawinfer.core.settings import Settings

        url = Settings().database_url
    return url


def _migrate(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    conn = config.attributes.get("connection")
    if conn is not None:
        _migrate(conn)
    else:
        engine = create_engine(_url())
        with engine.begin() as conn:
            _migrate(conn)
        engine.dispose()

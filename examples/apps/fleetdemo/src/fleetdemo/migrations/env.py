"""Alembic environment for fleetdemo (configured programmatically by ``fleetdemo-admin``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        engine = create_engine(
            str(config.get_main_option("sqlalchemy.url")), poolclass=pool.NullPool
        )
        with engine.connect() as conn:
            _run(conn)
        engine.dispose()

"""Alembic environment of the evaluation store.

:class:`otel_judge.quality.store.QualityStore` runs the migrations at start with an open connection
in ``config.attributes["connection"]``. For a developer making a new revision, the ``alembic.ini``
beside this file points at a scratch SQLite file:

    .venv/bin/alembic -c otel_judge/quality/migrations/alembic.ini upgrade head
    .venv/bin/alembic -c otel_judge/quality/migrations/alembic.ini revision --autogenerate -m "what changed"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from otel_judge.quality.schema import METADATA, VERSION_TABLE


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url in alembic.ini, or pass a connection in config.attributes")
    with create_engine(url).connect() as conn:
        _run(conn)
        conn.commit()

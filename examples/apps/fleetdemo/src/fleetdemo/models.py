"""Table definitions used by the API (the schema itself is owned by the Alembic migrations)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, func

metadata = MetaData()

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("value", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), server_default=func.now()),
)

"""The items table (PostgreSQL) behind /api/items, shared by the ASGI and WSGI front-ends."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import Engine, delete, insert, select

from fleetdemo.models import items


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    value: str


class ItemOut(BaseModel):
    id: int
    name: str
    value: str
    created_at: datetime | None


def create_item(engine: Engine, item: ItemIn) -> ItemOut:
    """Insert a row; sqlalchemy's IntegrityError on a duplicate name."""
    with engine.begin() as conn:
        row = conn.execute(
            insert(items).values(name=item.name, value=item.value).returning(items)
        ).one()
    return ItemOut(**row._mapping)


def list_items(engine: Engine) -> list[ItemOut]:
    with engine.connect() as conn:
        rows = conn.execute(select(items).order_by(items.c.id)).all()
    return [ItemOut(**row._mapping) for row in rows]


def get_item(engine: Engine, name: str) -> ItemOut | None:
    with engine.connect() as conn:
        row = conn.execute(select(items).where(items.c.name == name)).one_or_none()
    return None if row is None else ItemOut(**row._mapping)


def delete_item(engine: Engine, name: str) -> bool:
    with engine.begin() as conn:
        return bool(conn.execute(delete(items).where(items.c.name == name)).rowcount)

"""Concurrent changes the database refuses are 409 conflicts, never a 500: a duplicate
insert, an update of a row another request deleted."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import ApiError
from controller.store.database import Database
from controller.store.models import Network


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'outpost.db'}")
    database.create_schema()
    return database


def test_a_duplicate_insert_is_a_409(db: Database) -> None:
    with db.transaction() as s:
        s.add(Network(name="lan", subnet="10.0.0.0/24"))
    with pytest.raises(ApiError) as caught, db.transaction() as s:
        s.add(Network(name="lan", subnet="10.1.0.0/24"))
    assert caught.value.status == 409


def test_updating_a_row_deleted_meanwhile_is_a_409(db: Database) -> None:
    with db.transaction() as s:
        s.add(Network(name="lan", subnet="10.0.0.0/24"))
    with pytest.raises(ApiError) as caught, db.transaction() as first:
        net = first.query(Network).filter_by(name="lan").one()
        with db.transaction() as second:
            second.delete(second.query(Network).filter_by(name="lan").one())
        net.nat = True
    assert caught.value.status == 409
    with db.transaction() as s:
        assert s.query(Network).count() == 0

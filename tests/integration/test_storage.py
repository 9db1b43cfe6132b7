"""Storage on SQLite and on a real PostgreSQL: migrations, transactions, the desired state."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from controller.domain.desired import current_desired_state
from controller.domain.onboarding import claim_serial
from controller.store.database import Database, load_all_models
from controller.store.models import App, Assignment, AuditEvent, Base, Image, Node

pytestmark = pytest.mark.integration
SHA = "a" * 64


@pytest.fixture
def db(db_url: str) -> Database:
    database = Database(db_url)
    database.create_schema()
    return database


def _registered(db: Database, serial: str = "sn-1") -> int:
    with db.transaction() as s:
        node = claim_serial(s, serial)
        node.uuid = "00000000-0000-4000-8000-00000000000" + str(len(serial) % 10)
        node.state = "registered"
        return node.id


def _app(db: Database, name: str = "web") -> int:
    with db.transaction() as s:
        img = s.scalar(select(Image).where(Image.name == "img"))
        if img is None:
            img = Image(name="img", sha256=SHA, size=10, format="oci-archive")
            s.add(img)
            s.flush()
        app = App(
            uuid=f"00000000-0000-4000-8000-{len(name):012d}",
            name=name,
            kind="container",
            image_id=img.id,
            spec={},
        )
        s.add(app)
        s.flush()
        return app.id


def test_the_migrations_create_the_schema_the_models_declare(db: Database):
    load_all_models()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_creating_the_schema_twice_changes_nothing(db: Database):
    before = sorted(inspect(db.engine).get_table_names())
    db.create_schema()
    assert sorted(inspect(db.engine).get_table_names()) == before


def test_a_failed_transaction_stores_nothing(db: Database):
    with pytest.raises(RuntimeError), db.transaction() as s:
        claim_serial(s, "sn-x")
        s.add(AuditEvent(actor="t", action="node.claim", target="sn-x"))
        raise RuntimeError("boom")
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Node)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_the_generation_moves_only_when_the_content_changes(db: Database):
    node_id = _registered(db)
    app_id = _app(db)
    with db.transaction() as s:
        node = s.get(Node, node_id)
        first = current_desired_state(s, node, "https://c")
        again = current_desired_state(s, node, "https://c")
        s.add(Assignment(node_id=node_id, app_id=app_id))
        s.flush()
        changed = current_desired_state(s, node, "https://c")
    assert again.generation == first.generation
    assert changed.generation == first.generation + 1
    assert [a.name for a in changed.apps] == ["web"]


def test_json_columns_round_trip(db: Database):
    node_id = _registered(db)
    with db.transaction() as s:
        s.get(Node, node_id).labels = {"site": "qa", "ring": "1"}
    with db.transaction() as s:
        assert s.get(Node, node_id).labels == {"site": "qa", "ring": "1"}

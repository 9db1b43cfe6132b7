"""Long-poll wake-ups: sent on commit only, and across replicas on PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from controller.store.database import Database
from controller.store.notify import ALL, ConfigNotifier

pytestmark = pytest.mark.integration


@pytest.fixture
def db(db_url: str) -> Database:
    database = Database(db_url)
    database.create_schema()
    return database


def _waiter(notifier: ConfigNotifier, node_id: int, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    since = notifier.version(node_id)
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(notifier.wait(node_id, since, timeout)))
    t.start()
    return t, result


def test_a_committed_change_wakes_the_nodes_long_poll(db, db_url):
    notifier = ConfigNotifier(db_url)
    try:
        if db_url.startswith("postgresql"):  # let the listener subscribe first
            notifier.wait(ALL, notifier.version(ALL), 10.0)
        t, woke = _waiter(notifier, 7)
        with db.transaction() as s:
            notifier.notify(s, 7)
        t.join(30)
        assert woke == [True]
    finally:
        notifier.close()


def test_a_rolled_back_change_wakes_nobody(db):
    notifier = ConfigNotifier("sqlite://")  # in-process mode on either database
    since = notifier.version(7)
    with pytest.raises(RuntimeError), db.transaction() as s:
        notifier.notify(s, 7)
        raise RuntimeError("no")
    assert notifier.wait(7, since, 0.2) is False


def test_a_change_for_every_node_wakes_each_node(db):
    notifier = ConfigNotifier("sqlite://")
    since = notifier.version(3)
    with db.transaction() as s:
        notifier.notify(s, ALL)
    assert notifier.wait(3, since, 5.0) is True


def test_a_change_made_on_one_replica_wakes_a_poll_on_another(postgres_url):
    db = Database(postgres_url)
    db.create_schema()
    writer, reader = ConfigNotifier(postgres_url), ConfigNotifier(postgres_url)
    try:
        reader.wait(ALL, reader.version(ALL), 10.0)  # its listener is up
        t, woke = _waiter(reader, 5)
        with db.transaction() as s:
            writer.notify(s, 5)
        t.join(30)
        assert woke == [True]
    finally:
        writer.close()
        reader.close()

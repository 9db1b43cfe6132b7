"""Transactions held too long are reported while they are still held, once, with where
they are: a stuck one never reaches the end where a duration could be logged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from controller.store.slow import TransactionWatch


@contextmanager
def _held_in_a_thread(watch: TransactionWatch) -> Iterator[None]:
    """A transaction held by another thread for the block's duration."""
    inside, release = threading.Event(), threading.Event()

    def stuck_in_the_middle_of_a_transaction() -> None:
        token = watch.enter()
        inside.set()
        release.wait()
        watch.leave(token)

    thread = threading.Thread(target=stuck_in_the_middle_of_a_transaction)
    thread.start()
    inside.wait()
    try:
        yield
    finally:
        release.set()
        thread.join()


def test_a_transaction_held_too_long_is_reported_once_with_its_stack() -> None:
    watch = TransactionWatch(slow_s=0.0, watcher=False)
    with _held_in_a_thread(watch):
        (held, stack), *more = watch.overdue()
        assert more == []
        assert held >= 0.0 and "stuck_in_the_middle_of_a_transaction" in stack
        assert watch.overdue() == []


def test_a_transaction_within_its_time_is_not_reported() -> None:
    watch = TransactionWatch(slow_s=3600.0, watcher=False)
    with _held_in_a_thread(watch):
        assert watch.overdue() == []


def test_an_ended_transaction_is_forgotten() -> None:
    watch = TransactionWatch(slow_s=0.0, watcher=False)
    watch.leave(watch.enter())
    assert watch.overdue() == []

"""Transactions held too long are reported while they are still held, once, with where
they are: a stuck one never reaches the end where a duration could be logged."""

from __future__ import annotations

import threading

from controller.store.slow import TransactionWatch


def _held_in_a_thread(watch: TransactionWatch) -> tuple[threading.Event, threading.Thread]:
    inside, release = threading.Event(), threading.Event()

    def stuck_in_the_middle_of_a_transaction() -> None:
        token = watch.enter()
        inside.set()
        release.wait()
        watch.leave(token)

    thread = threading.Thread(target=stuck_in_the_middle_of_a_transaction)
    thread.start()
    inside.wait()
    return release, thread


def test_a_transaction_held_too_long_is_reported_once_with_its_stack() -> None:
    watch = TransactionWatch(slow_s=0.0, watcher=False)
    release, thread = _held_in_a_thread(watch)
    try:
        (held, stack), *more = watch.overdue()
        assert more == []
        assert held >= 0.0 and "stuck_in_the_middle_of_a_transaction" in stack
        assert watch.overdue() == []
    finally:
        release.set()
        thread.join()


def test_a_transaction_within_its_time_is_not_reported() -> None:
    watch = TransactionWatch(slow_s=3600.0, watcher=False)
    release, thread = _held_in_a_thread(watch)
    try:
        assert watch.overdue() == []
    finally:
        release.set()
        thread.join()


def test_an_ended_transaction_is_forgotten() -> None:
    watch = TransactionWatch(slow_s=0.0, watcher=False)
    watch.leave(watch.enter())
    assert watch.overdue() == []

"""Parked long-polls in one process (controller.store.notify.ConfigNotifier): a change
wakes the polls of its node, ``ALL`` wakes every one, stopping releases them all."""

from __future__ import annotations

import threading

from controller.store.notify import ALL, ConfigNotifier
from tests.fixtures.netns import wait_for


def _park(notifier: ConfigNotifier, node_id: int) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    since = notifier.version(node_id)
    thread = threading.Thread(target=lambda: result.append(notifier.wait(node_id, since, 60)))
    thread.start()
    return thread, result


def test_a_change_wakes_the_polls_of_its_node_and_no_other():
    notifier = ConfigNotifier()
    one, one_result = _park(notifier, 1)
    two, _ = _park(notifier, 2)
    wait_for(lambda: notifier.waiters == 2, 10, "two parked polls")
    notifier.wake(1)
    one.join(10)
    assert one_result == [True]
    assert notifier.waiters == 1
    assert not any(parked.is_set() for parked in notifier._parked[2])  # not even looked at
    notifier.wake(ALL)
    two.join(10)
    assert notifier.waiters == 0 and notifier._parked == {}


def test_a_change_before_the_wait_returns_at_once():
    notifier = ConfigNotifier()
    since = notifier.version(3)
    notifier.wake(3)
    assert notifier.wait(3, since, 60) is True
    assert notifier.waiters == 0


def test_a_wait_without_a_change_ends_false_at_its_timeout():
    notifier = ConfigNotifier()
    assert notifier.wait(4, notifier.version(4), 0.05) is False
    assert notifier._parked == {}


def test_stopping_releases_every_parked_poll_and_later_ones():
    notifier = ConfigNotifier()
    parked = [_park(notifier, n) for n in (5, 5, 6)]
    wait_for(lambda: notifier.waiters == 3, 10, "three parked polls")
    notifier.release_waiters()
    for thread, result in parked:
        thread.join(10)
        assert result == [False]
    assert notifier.wait(7, notifier.version(7), 60) is False

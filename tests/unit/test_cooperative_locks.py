"""Under gunicorn's gevent worker, every lock the controller makes lets another greenlet run
while one waits for it.  The modules are imported before gevent patches ``threading`` (in
gunicorn's master), the objects are made after (in the worker): a lock captured at import
time is an OS lock, and its second taker blocks the whole worker while the greenlet holding
it can never run to release it.  Each case runs in a fresh interpreter, in that order."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_PROGRAM = """
import controller.server, controller.app, controller.services, controller.store.database
from gevent import monkey
monkey.patch_all()
import gevent

def make_lock():
{make}

lock = make_lock()
got = []

def holder():
    with lock:
        gevent.sleep(0.05)  # the holder yields while it holds the lock (a git fetch, a query)

def taker():
    got.append(lock.acquire(timeout=2))  # an OS lock would block the hub: no holder to run

gevent.joinall([gevent.spawn(holder), gevent.spawn(taker)])
print("acquired" if got == [True] else "blocked")
"""

LOCKS = {
    "the git sync lock": """
    from controller.services import Services
    return Services.__dataclass_fields__["git_sync_lock"].default_factory()
""",
    "the SQLite transaction lock": """
    import tempfile
    from controller.store.database import Database
    return Database("sqlite:///" + tempfile.mkdtemp() + "/t.db")._serial
""",
}


@pytest.mark.parametrize("make", LOCKS.values(), ids=list(LOCKS))
def test_a_lock_made_in_the_worker_lets_its_holder_run_while_another_greenlet_waits(make: str):
    program = _PROGRAM.format(make=textwrap.indent(textwrap.dedent(make).strip(), "    "))
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "acquired", done.stderr

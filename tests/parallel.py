"""How ``make test`` spreads the suite over two pytest-xdist workers (``-n 2 --dist loadgroup``).

CI has two cores. The tests that boot guests under TCG (a whole node, the inference VM)
keep one core busy and are almost all waiting on their guest; the other integration tests
start daemons of their own and some of them read timings. So the scheduler here makes:

- one unit of the VM-booting modules (:data:`VM_MODULES`), run in file order on one worker;
- one unit of every other integration and browser test, run in file order on one worker,
  never beside another test of its own unit;
- one unit per unit-test or contract module: each worker takes them when it has room.

Some tests load the machine themselves or read latencies that a TCG guest beside them
stretches (:data:`ALONE_MODULES`: the fuzzer, the 1,000-node failover, the remote-access
relays): ``make test`` runs them afterwards in a second, single-process pass
(``--phase alone``), after a two-worker pass of everything else (``--phase shared``).
``--phase all`` (the default) selects every test.

It is xdist's "loadscope" scheduler with these scopes (pytest 9 keeps the nodeid that
xdist's own ``xdist_group`` marks rewrite, so grouping by mark does not work there).
Without ``-n`` nothing changes: one process runs everything in order.
Loaded by ``tests/conftest.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["ALONE_MODULES", "VM_MODULES", "runs_alone", "scope_of"]

VM_MODULES = frozenset(
    {
        "test_qemu_node.py",
        "test_lab_qemu.py",
        "test_inference_fleet.py",
        "test_inference_vm_image.py",
        "test_inference_oci_podman.py",
    }
)
"""Modules whose tests boot a guest under TCG (or build the image it boots)."""


ALONE_MODULES = frozenset(
    {
        "test_api_fuzz.py",
        "test_replica_failover.py",
        "test_remote_relay.py",
        "test_remote_replicas.py",
        "test_remote_port_forward.py",
        "test_remote_terminal.py",
    }
)
"""Modules run in the second pass, with nothing beside them (CI saw them time out beside a
TCG guest and an image build)."""


def runs_alone(nodeid: str) -> bool:
    """Does ``nodeid`` belong to the second, single-process pass?"""
    path = nodeid.split("::", 1)[0]
    folder, _, module = path.rpartition("/")
    return folder.endswith(("tests/integration", "tests/browser")) and module in ALONE_MODULES


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--phase",
        choices=("all", "shared", "alone"),
        default="all",
        help="shared: every test but those that must run alone; alone: only those (make test)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    phase = config.getoption("--phase")
    if phase == "all":
        return
    keep = [i for i in items if runs_alone(i.nodeid) == (phase == "alone")]
    dropped = [i for i in items if runs_alone(i.nodeid) != (phase == "alone")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def scope_of(nodeid: str) -> str:
    """The unit of work ``nodeid`` belongs to: "vm", "integration" or its own module."""
    path = nodeid.split("::", 1)[0]
    folder, _, module = path.rpartition("/")
    if folder.endswith(("tests/integration", "tests/browser")):
        return "vm" if module in VM_MODULES else "integration"
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    # Units in collection order: the integration unit (browser tests come first) and the VM
    # unit (from test_inference_*) are handed out before the unit-test modules, so the
    # longest chain, the VM unit, starts at once rather than after the large unit modules.
    config.option.loadscopereorder = False

    class _Units(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return _Units(config, log)

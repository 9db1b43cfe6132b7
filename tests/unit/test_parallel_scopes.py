"""The units ``make test`` hands its two workers (tests/parallel.py)."""

from __future__ import annotations

from tests.parallel import runs_alone, scope_of


def test_the_vm_booting_modules_are_one_unit():
    assert scope_of("tests/integration/test_qemu_node.py::test_a") == "vm"
    assert scope_of("tests/integration/test_inference_fleet.py::test_b[x]") == "vm"


def test_every_other_integration_and_browser_test_is_one_unit():
    assert scope_of("tests/integration/test_server.py::test_a") == "integration"
    assert scope_of("tests/browser/test_ui_browser.py::test_b") == "integration"


def test_a_unit_test_module_is_a_unit_of_its_own():
    assert scope_of("tests/unit/test_vm_events.py::test_a") == "tests/unit/test_vm_events.py"
    assert scope_of("tests/contract/test_runtime_contract.py::test_b[podman]") == (
        "tests/contract/test_runtime_contract.py"
    )


def test_the_fuzzer_failover_and_remote_access_tests_run_alone():
    assert runs_alone("tests/integration/test_api_fuzz.py::test_a")
    assert runs_alone("tests/browser/test_remote_terminal.py::test_b")
    assert not runs_alone("tests/integration/test_server.py::test_a")
    assert not runs_alone("tests/unit/test_api_fuzz.py::test_a")  # a unit module of that name

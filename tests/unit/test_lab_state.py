"""The lab's state file (lab.json), its lock and the process records it keeps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.procs import alive, proc_ref, spawn, stop_all
from lab.state import (
    ControllerRecord,
    LabState,
    NodeRecord,
    ProcRef,
    lab_lock,
    load_state,
    save_state,
)


def make_state(directory: Path, nodes: int = 2) -> LabState:
    state = LabState(
        lab_id="a1b2",
        dir=directory,
        kind="process",
        phase="starting",
        created_at="2026-11-23T19:00:00+00:00",
        controller=ControllerRecord(
            host="10.213.1.1",
            port=9443,
            data_dir=directory / "controller",
            token_file=directory / "admin-token",
        ),
    )
    for i in range(1, nodes + 1):
        name = f"lab-node-{i:02d}"
        state.nodes.append(
            NodeRecord(name=name, serial=name, kind="process", dir=directory / "nodes" / name)
        )
    return state


def test_a_saved_state_loads_back_equal(tmp_path: Path):
    state = make_state(tmp_path)
    state.nodes[0].processes["agent"] = ProcRef(pid=4242, start_ticks=7, name="agent")
    save_state(state)
    assert load_state(tmp_path) == state


def test_saving_leaves_no_temporary_file_behind(tmp_path: Path):
    save_state(make_state(tmp_path))
    save_state(make_state(tmp_path, nodes=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.json"]
    assert len(load_state(tmp_path).nodes) == 3  # type: ignore[union-attr]


def test_a_dir_without_a_state_file_holds_no_lab(tmp_path: Path):
    assert load_state(tmp_path) is None


def test_a_corrupt_state_file_is_reported_and_left_as_it_is(tmp_path: Path):
    (tmp_path / "lab.json").write_text("{not json")
    with pytest.raises(LabError, match="not a valid lab state file"):
        load_state(tmp_path)
    assert (tmp_path / "lab.json").read_text() == "{not json"


def test_a_state_file_with_unknown_fields_is_refused(tmp_path: Path):
    raw = json.loads(make_state(tmp_path).model_dump_json())
    raw["surprise"] = 1
    (tmp_path / "lab.json").write_text(json.dumps(raw))
    with pytest.raises(LabError, match="not a valid lab state file"):
        load_state(tmp_path)


def test_an_interface_name_longer_than_the_kernel_allows_is_refused(tmp_path: Path):
    node = make_state(tmp_path).nodes[0]
    with pytest.raises(ValueError, match="host_veth"):
        node.host_veth = "x" * 16


def test_a_second_command_cannot_take_the_lab_lock(tmp_path: Path):
    with (
        lab_lock(tmp_path),
        pytest.raises(LabError, match="another outpost-lab command"),
        lab_lock(tmp_path),
    ):
        pass


def test_the_lock_is_free_again_after_the_holder_exits(tmp_path: Path):
    holder = (
        "import sys, time; from pathlib import Path; from lab.state import lab_lock\n"
        "with lab_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LabError), lab_lock(tmp_path):
            pass
    finally:
        proc.kill()  # a crash: the kernel drops the flock
        proc.wait()
    with lab_lock(tmp_path):
        pass


def test_a_process_record_names_that_very_process(tmp_path: Path):
    proc, ref = spawn(["sleep", "30"], "sleeper", tmp_path / "sleep.log")
    try:
        assert alive(ref)
        assert not alive(ref.model_copy(update={"start_ticks": ref.start_ticks + 1}))
    finally:
        proc.kill()
        proc.wait()
    assert not alive(ref)


def test_stopping_ends_the_process_and_reports_what_was_running(tmp_path: Path):
    proc, ref = spawn(["sleep", "30"], "sleeper", tmp_path / "sleep.log")
    gone = proc_ref(2**22 - 1, "never existed")
    assert [r.pid for r in stop_all([ref, gone], timeout_s=5)] == [ref.pid]
    assert not alive(ref)
    proc.wait(5)

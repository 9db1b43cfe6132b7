"""Unit tests of PodmanRuntime's decisions and error mapping, with a scripted podman CLI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from node_agent.runtime.base import PermanentError, TemporaryError, WorkloadSpec, WorkloadState
from node_agent.runtime.container import PodmanRuntime, _loaded_names
from node_agent.runtime.podman_args import RunOptions, run_argv
from node_agent.runtime.podman_cli import PodmanCLI, classify_failure, failure, trim_stderr

NODE = "11111111-2222-3333-4444-555555555555"
APP = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SHA = "ab" * 32
REF = f"localhost/outpost/img:{SHA}"

Handler = Callable[[list[str]], tuple[int, str, str]]


class ScriptedCLI(PodmanCLI):
    """Records podman calls; ``handlers[subcommand]`` returns (rc, stdout, stderr)."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        super().__init__("podman")
        self.handlers = handlers
        self.calls: list[list[str]] = []

    def run(self, args: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        args = list(args)
        self.calls.append(args)
        key = " ".join(args[:2]) if args[0] == "image" else args[0]
        rc, out, err = self.handlers.get(key, lambda a: (0, "", ""))(args)
        proc = subprocess.CompletedProcess(self.argv(args), rc, out, err)
        if kw.get("check", True) and rc != 0:
            raise failure(args, proc, kw.get("app_uuid", ""))
        return proc

    def subcommands(self) -> list[str]:
        return [c[0] for c in self.calls]


def make_spec(tmp_path: Path, **changes: object) -> WorkloadSpec:
    image = tmp_path / "busybox-oci.tar"
    image.write_bytes(b"not really an archive")
    spec = WorkloadSpec(APP, "hello", NODE, image, SHA, "oci-archive", tmp_path / "work")
    return dataclasses.replace(spec, **changes)


def ps_entry(spec: WorkloadSpec, state: str, sha: str = SHA) -> dict[str, Any]:
    no_limits = RunOptions(memory_limit=False, cpu_limit=False)  # as runtime_with() builds
    argv = run_argv(dataclasses.replace(spec, image_sha256=sha), NODE, no_limits)
    labels = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--label")
    return {"Id": "c0ffee" * 10, "Names": ["outpost-x"], "State": state, "Labels": labels}


def runtime_with(handlers: dict[str, Handler]) -> tuple[PodmanRuntime, ScriptedCLI]:
    runtime = PodmanRuntime(NODE, resource_limits=False)
    runtime.cli = ScriptedCLI(handlers)
    return runtime, runtime.cli


def test_wrong_format_is_permanent_before_any_podman_call(tmp_path: Path) -> None:
    runtime, cli = runtime_with({})
    with pytest.raises(PermanentError, match=r"'qcow2'.*oci-archive"):
        runtime.start(make_spec(tmp_path, image_format="qcow2"))
    assert cli.calls == []


def test_running_container_with_same_config_is_a_noop(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    runtime, cli = runtime_with({"ps": lambda a: (0, json.dumps([ps_entry(spec, "running")]), "")})
    workload = runtime.start(spec)
    assert workload.state is WorkloadState.RUNNING
    assert cli.subcommands() == ["ps"]


def test_stopped_container_is_started(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    runtime, cli = runtime_with({"ps": lambda a: (0, json.dumps([ps_entry(spec, "exited")]), "")})
    runtime.start(spec)
    assert "start" in cli.subcommands()
    assert "run" not in cli.subcommands()


def test_other_image_loads_first_then_removes_and_recreates(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    old = json.dumps([ps_entry(spec, "running", sha="cd" * 32)])
    runtime, cli = runtime_with(
        {
            "ps": lambda a: (0, old, ""),
            "image exists": lambda a: (1, "", ""),
            "load": lambda a: (0, "Loaded image: localhost/outpost/busybox:1\n", ""),
        }
    )
    runtime.start(spec)
    subs = cli.subcommands()
    assert subs.index("load") < subs.index("tag") < subs.index("rm") < subs.index("run")
    assert cli.calls[subs.index("tag")][1:] == ["localhost/outpost/busybox:1", REF]


def test_existing_image_is_not_loaded_again(tmp_path: Path) -> None:
    runtime, cli = runtime_with({"image exists": lambda a: (0, "", "")})
    assert runtime.ensure_image(make_spec(tmp_path)) == REF
    assert "load" not in cli.subcommands()


def test_failed_run_cleans_up_and_reports_app_and_stderr(tmp_path: Path) -> None:
    runtime, cli = runtime_with(
        {
            "image exists": lambda a: (0, "", ""),
            "run": lambda a: (126, "", 'level=warning msg="x"\nError: runc create failed: boom\n'),
        }
    )
    with pytest.raises(PermanentError, match=rf"{APP}.*runc create failed: boom"):
        runtime.start(make_spec(tmp_path))
    assert cli.subcommands()[-1] == "rm"


def test_missing_image_file_is_permanent(tmp_path: Path) -> None:
    runtime, _ = runtime_with({"image exists": lambda a: (1, "", "")})
    with pytest.raises(PermanentError, match="does not exist"):
        runtime.ensure_image(make_spec(tmp_path, image_path=tmp_path / "nope.tar"))


def test_remove_ignores_missing_and_maps_other_errors(tmp_path: Path) -> None:
    runtime, _ = runtime_with({"rm": lambda a: (125, "", "Error: no such container x\n")})
    runtime.remove(APP)
    runtime, _ = runtime_with({"rm": lambda a: (125, "", "Error: database is locked\n")})
    with pytest.raises(TemporaryError, match=APP):
        runtime.remove(APP)


def test_stop_and_remove_select_by_labels() -> None:
    runtime, cli = runtime_with({})
    runtime.stop(APP, timeout_s=2.5)
    runtime.remove(APP)
    stop, rm = cli.calls
    assert stop[:4] == ["stop", "--ignore", "--time", "3"]
    for call in (stop, rm):
        assert f"label=outpost.node={NODE}" in call
        assert f"label=outpost.app={APP}" in call


def test_list_keys_by_app_and_prefers_running(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    entries = [ps_entry(spec, "exited"), ps_entry(spec, "running"), {"Id": "x", "Labels": {}}]
    entries[0]["ExitCode"] = 137
    runtime, _ = runtime_with({"ps": lambda a: (0, json.dumps(entries), "")})
    listed = runtime.list()
    assert list(listed) == [APP]
    assert listed[APP].state is WorkloadState.RUNNING
    assert listed[APP].image_sha256 == SHA


def test_missing_cgroup_controllers_drop_limits(caplog: pytest.LogCaptureFixture) -> None:
    runtime = PodmanRuntime(NODE)
    info = {"host": {"cgroupControllers": ["cpu", "pids"], "cgroupVersion": "v1"}}
    runtime.cli = ScriptedCLI({"info": lambda a: (0, json.dumps(info), "")})
    options = runtime._run_options()
    assert (options.memory_limit, options.cpu_limit) == (False, True)
    assert "--memory" in caplog.text


def test_classification() -> None:
    assert classify_failure(127, "") is PermanentError
    assert classify_failure(125, "Error: database is locked") is TemporaryError
    assert classify_failure(125, "Error: invalid reference format") is PermanentError
    assert classify_failure(125, "Error: something odd") is TemporaryError
    assert classify_failure(125, "Error: odd", permanent_by_default=True) is PermanentError


def test_trim_stderr_keeps_error_lines() -> None:
    stderr = 'time="t" level=warning msg="w"\nError: payload does not match:\n * oci: bad\n'
    assert trim_stderr(stderr) == "Error: payload does not match: * oci: bad"
    assert len(trim_stderr("Error: " + "x" * 2000)) == 500


def test_loaded_names() -> None:
    assert _loaded_names("Loaded image: localhost:5000/a/b:1\n") == ["localhost:5000/a/b:1"]
    assert _loaded_names("Loaded image(s): a:1,b:2\n") == ["a:1", "b:2"]
    assert _loaded_names("Getting image source signatures\n") == []


def test_real_subprocess_timeout_and_missing_binary() -> None:
    with pytest.raises(TemporaryError, match="timed out"):
        PodmanCLI("sleep", timeout_s=0.2).run(["30"], app_uuid=APP)
    with pytest.raises(PermanentError, match="not found"):
        PodmanCLI("/nonexistent/podman").run(["ps"])

"""Unit tests of the pure podman argv builders (node_agent/runtime/podman_args.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from node_agent.runtime.base import PermanentError, WorkloadSpec
from node_agent.runtime.podman_args import (
    LABEL_SPEC,
    RunOptions,
    container_name,
    image_ref,
    normalize_sha256,
    run_argv,
)

NODE = "11111111-2222-3333-4444-555555555555"
APP = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SHA = "ab" * 32


def make_spec(**changes: object) -> WorkloadSpec:
    spec = WorkloadSpec(
        app_uuid=APP,
        name="hello",
        node_uuid=NODE,
        image_path=Path("/images/busybox-oci.tar"),
        image_sha256=SHA,
        image_format="oci-archive",
        work_dir=Path("/work/apps") / APP,
        vcpus=2,
        memory_mib=96,
        command=("sh", "-c", "echo hello-outpost; sleep 3600"),
        env=(("GREETING", "hi there"), ("EMPTY", "")),
    )
    return dataclasses.replace(spec, **changes)


def pairs(argv: list[str], flag: str) -> list[str]:
    """Values following each occurrence of ``flag``."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def test_run_argv_has_runtime_ulimits_init_and_no_network() -> None:
    argv = run_argv(make_spec(), NODE)
    assert argv[:2] == ["run", "--detach"]
    assert pairs(argv, "--runtime") == ["runc"]
    assert pairs(argv, "--ulimit") == ["nofile=1024:1024", "nproc=1024:1024"]
    assert "--init" in argv
    assert pairs(argv, "--network") == ["none"]
    assert pairs(argv, "--restart") == ["no"]
    assert pairs(argv, "--pull") == ["never"]
    assert pairs(argv, "--name") == [f"outpost-{NODE[:8]}-{APP[:8]}"]


def test_run_argv_publishes_no_ports() -> None:
    argv = run_argv(make_spec(), NODE)
    assert not {"-p", "--publish", "-P", "--publish-all"} & set(argv)
    assert not any(a.startswith(("--publish=", "-p=")) for a in argv)


def test_run_argv_labels() -> None:
    labels = dict(v.split("=", 1) for v in pairs(run_argv(make_spec(), NODE), "--label"))
    assert labels["outpost.node"] == NODE
    assert labels["outpost.app"] == APP
    assert labels["outpost.image-sha256"] == SHA
    assert labels["outpost.name"] == "hello"
    assert len(labels[LABEL_SPEC]) == 64


def test_run_argv_resources_log_env_and_command() -> None:
    argv = run_argv(make_spec(), NODE)
    assert pairs(argv, "--memory") == ["96m"]
    assert pairs(argv, "--cpus") == ["2"]
    assert pairs(argv, "--log-driver") == ["k8s-file"]
    assert pairs(argv, "--log-opt") == [f"path=/work/apps/{APP}/console.log"]
    assert pairs(argv, "--env") == ["GREETING=hi there", "EMPTY="]
    image = argv.index(image_ref(SHA))
    assert argv[image + 1 :] == ["sh", "-c", "echo hello-outpost; sleep 3600"]


def test_empty_command_uses_the_image_default() -> None:
    argv = run_argv(make_spec(command=()), NODE)
    assert argv[-1] == image_ref(SHA)


def test_options_can_drop_limits_and_console_log() -> None:
    options = RunOptions(memory_limit=False, cpu_limit=False, console_log=False, init=False)
    argv = run_argv(make_spec(), NODE, options)
    assert not {"--memory", "--cpus", "--log-driver", "--log-opt", "--init"} & set(argv)
    assert pairs(run_argv(make_spec(), NODE, RunOptions(runtime="crun")), "--runtime") == ["crun"]


def test_spec_label_tracks_the_spec() -> None:
    def digest(spec: WorkloadSpec) -> str:
        return next(v for v in pairs(run_argv(spec, NODE), "--label") if v.startswith(LABEL_SPEC))

    assert digest(make_spec()) == digest(make_spec())
    assert digest(make_spec()) != digest(make_spec(env=(("GREETING", "bye"),)))
    assert digest(make_spec()) != digest(make_spec(image_sha256="cd" * 32))
    assert digest(make_spec()) != digest(make_spec(memory_mib=128))


def test_sha256_forms() -> None:
    assert normalize_sha256("sha256:" + SHA.upper()) == SHA
    assert image_ref("sha256:" + SHA) == f"localhost/outpost/img:{SHA}"
    for bad in ("", "abc", "sha256:" + "zz" * 32, SHA + "00"):
        with pytest.raises(PermanentError):
            normalize_sha256(bad, APP)


def test_container_name_uses_uuid_prefixes() -> None:
    assert container_name(NODE, APP) == "outpost-11111111-aaaaaaaa"


@pytest.mark.parametrize(
    "changes",
    [
        {"env": (("BAD=KEY", "x"),)},
        {"env": (("", "x"),)},
        {"vcpus": 0},
        {"memory_mib": 0},
        {"image_sha256": "not-a-digest"},
    ],
)
def test_invalid_specs_are_permanent_errors(changes: dict[str, object]) -> None:
    with pytest.raises(PermanentError, match=APP):
        run_argv(make_spec(**changes), NODE)

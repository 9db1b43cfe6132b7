"""The `outpost` CLI against a real HTTPS controller: apply, get, exit codes."""

from __future__ import annotations

import json

import pytest
import yaml

from outpost_cli.main import main

pytestmark = pytest.mark.integration

NETWORK = {"kind": "Network", "spec": {"name": "lan", "subnet": "10.88.0.0/24"}}
IMAGE = {
    "kind": "Image",
    "spec": {
        "name": "ext",
        "format": "oci-archive",
        "sha256": "c" * 64,
        "size": 10,
        "url": "https://mirror.invalid/ext.tar",
    },
}


def _app(command: list[str]) -> dict:  # type: ignore[type-arg]
    return {
        "kind": "App",
        "spec": {
            "name": "web",
            "kind": "container",
            "image": "ext",
            "command": command,
            "networks": [{"name": "lan"}],
        },
    }


@pytest.fixture
def outpost(controller_server, capsys):  # type: ignore[no-untyped-def]
    def run(*args: str) -> tuple[int, str, str]:
        code = main(
            [
                "--url",
                controller_server.url,
                "--token",
                controller_server.token,
                "--ca",
                str(controller_server.root_ca),
                *args,
            ]
        )
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def site(tmp_path):  # type: ignore[no-untyped-def]
    def write(*docs: dict) -> str:  # type: ignore[type-arg]
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        return str(path)

    return write


def test_apply_creates_the_objects_in_order(outpost, site):
    code, out, _ = outpost("apply", "-f", site(NETWORK, IMAGE, _app(["sleep", "1"])))
    assert code == 0
    assert out.splitlines() == ["network/lan created", "image/ext created", "app/web created"]


def test_apply_twice_changes_nothing(outpost, site):
    path = site(NETWORK, IMAGE, _app(["sleep", "1"]))
    outpost("apply", "-f", path)
    _, out, _ = outpost("apply", "-f", path)
    assert out.splitlines() == ["network/lan unchanged", "image/ext unchanged", "app/web unchanged"]


def test_apply_of_a_changed_app_configures_it(outpost, site):
    outpost("apply", "-f", site(NETWORK, IMAGE, _app(["sleep", "1"])))
    _, out, _ = outpost("apply", "-f", site(NETWORK, IMAGE, _app(["sleep", "2"])))
    assert out.splitlines()[-1] == "app/web configured"
    _, out, _ = outpost("get", "apps", "web", "-o", "json")
    assert json.loads(out)["command"] == ["sleep", "2"]


def test_get_prints_json_for_scripts(outpost, site):
    outpost("apply", "-f", site(NETWORK))
    code, out, _ = outpost("get", "networks", "-o", "json")
    assert code == 0
    assert json.loads(out) == [{"name": "lan", "subnet": "10.88.0.0/24", "nat": False}]


def test_a_refused_request_exits_1_with_the_reason(outpost):
    code, _, err = outpost("get", "nodes", "nope")
    assert code == 1 and "404" in err


def test_an_invalid_app_is_refused_naming_the_field(outpost, site):
    outpost("apply", "-f", site(NETWORK, IMAGE))
    bad = _app(["x"])
    bad["spec"]["resources"] = {"vcpus": 0}
    code, _, err = outpost("apply", "-f", site(bad))
    assert code == 1 and "resources.vcpus" in err


def test_a_bad_file_exits_2(outpost, site):
    code, _, err = outpost("apply", "-f", site({"kind": "Spaceship", "spec": {}}))
    assert code == 2 and "kind" in err


def test_an_unreachable_controller_exits_3(capsys):
    assert main(["--url", "https://127.0.0.1:9", "--token", "x", "get", "nodes"]) == 3


def test_get_nodes_as_json_loads_nothing_of_the_server(controller_server):  # type: ignore[no-untyped-def]
    from tests.unit.test_cli_light import HEAVY, OURS, _modules_loaded, _top

    loaded = _modules_loaded(
        "--url",
        controller_server.url,
        "--token",
        controller_server.token,
        "--ca",
        str(controller_server.root_ca),
        "-o",
        "json",
        "get",
        "nodes",
    )
    assert "outpost_cli.transport" in loaded  # it did talk to the controller
    assert "requests" not in _top(loaded)  # the standard library's http.client did
    assert not _top(loaded) & {*HEAVY, *OURS}


def test_app_create_takes_user_data_from_a_file_and_a_secret_is_never_shown(
    outpost, site, tmp_path
):
    assert outpost("apply", "-f", site(IMAGE))[0] == 0
    (tmp_path / "ud.yaml").write_text("detector: {mode: eyes}\npassword: not-for-eyes\n")
    code, out, err = outpost(
        "-o", "json", "app-create", "--name", "cam", "--kind", "container", "--image", "ext",
        "--user-data-file", str(tmp_path / "ud.yaml"), "--user-data-secret",
    )  # fmt: skip
    assert code == 0, err
    assert "not-for-eyes" not in out and json.loads(out)["user_data"].startswith("<secret: ")
    code, out, _ = outpost("-o", "json", "get", "apps", "cam")
    assert code == 0 and "not-for-eyes" not in out and json.loads(out)["user_data_secret"]
    code, out, _ = outpost("app-metrics", "cam")
    assert code == 0 and out.strip() == "cam: runs on no node"
    code, _, err = outpost("app-create", "--name", "x", "--kind", "container", "--image", "ext",
                           "--user-data-file", str(tmp_path / "absent"))  # fmt: skip
    assert code == 2 and "absent" in err

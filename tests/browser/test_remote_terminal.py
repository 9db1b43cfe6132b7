"""Remote access end to end on the real components: a real controller process (gunicorn),
a real agent process with real libvirt/QEMU and podman, headless Chromium.

One VM boot serves the module (file order): an operator opens the tiny test VM's serial
console in the browser, types a command into its shell and reads the answer; opens an
exec into a container and does the same; the recording of the console session replays
the same text in the UI.  Then the CLI: ``outpost exec`` into the real container returns
the command's output and exit code, and ``outpost console`` under a pseudo-terminal reaches
the same VM shell.  Screenshots go to ``build/screenshots``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from controller.cli import main as controller_main
from tests.fixtures.browser import LAPTOP, screenshot
from tests.fixtures.e2e import E2ENode, e2e_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SERIAL = "remote-node-1"
CONTAINER_CMD = ["sh", "-c", "while true; do sleep 5; done"]
WAIT_MS = 120_000


@dataclass
class Site:
    node: E2ENode
    page: Any
    password: str
    console_session: str = ""


@pytest.fixture(scope="module")
def site(
    tmp_path_factory, built_images, podman_engine, libvirt_uri, hypervisor_accel, chromium
) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("remote-e2e")
    with e2e_node(base, SERIAL, built_images, podman_engine, libvirt_uri, hypervisor_accel) as node:
        api = node.api
        api(
            "POST",
            "/apps",
            json={"name": "c1", "kind": "container", "image": "busybox", "command": CONTAINER_CMD},
        ).raise_for_status()
        api(
            "POST",
            "/apps",
            json={"name": "v1", "kind": "vm", "image": "testvm", "resources": {"memory_mib": 96}},
        ).raise_for_status()
        for app in ("c1", "v1"):
            api("POST", f"/nodes/{SERIAL}/apps", json={"app": app}).raise_for_status()
        node.start_agent()
        node.wait_states({"c1": "RUNNING", "v1": "RUNNING"})
        pw = base / "operator.pw"
        assert (
            controller_main(
                [
                    "--data-dir",
                    str(node.data_dir),
                    "adduser",
                    "--username",
                    "ops",
                    "--role",
                    "operator",
                    "--password-file",
                    str(pw),
                ]
            )
            == 0
        )
        context = chromium.new_context(
            viewport=LAPTOP, ignore_https_errors=True, accept_downloads=True
        )
        context.set_default_timeout(30_000)
        try:
            yield Site(node, context.new_page(), pw.read_text().strip())
        finally:
            context.close()


def _login(site: Site) -> None:
    page, url = site.page, site.node.url
    page.goto(f"{url}/ui/login")
    page.get_by_label("Username").fill("ops")
    page.get_by_label("Password").fill(site.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/ui/")


def _screen(page: Any) -> str:
    return page.locator("#terminal .xterm-rows").inner_text()  # type: ignore[no-any-return]


def _type_until(page: Any, command: str, answer: str, timeout_s: float = 120) -> None:
    """Type ``command`` + Enter (again while the shell is not there yet) until the
    terminal shows ``answer``."""
    deadline = time.monotonic() + timeout_s
    page.locator("#terminal .xterm-helper-textarea").focus()
    while True:
        page.keyboard.type(command)
        page.keyboard.press("Enter")
        try:
            page.wait_for_function(
                "t => document.querySelector('#terminal .xterm-rows').innerText.includes(t)",
                arg=answer,
                timeout=5_000,
            )
            return
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError(f"{answer!r} never shown:\n{_screen(page)}") from None


def test_an_operator_types_into_the_vm_serial_console_and_reads_the_answer(site: Site):
    _login(site)
    page = site.page
    page.goto(f"{site.node.url}/ui/apps/v1")
    page.get_by_role("button", name=f"Console v1 on {SERIAL}").click()
    page.wait_for_url("**/ui/remote/sessions/*")
    page.locator("#terminal[data-live='1']").wait_for(timeout=WAIT_MS)
    _type_until(page, "echo console-$((6*7))-ok", "console-42-ok")
    site.console_session = page.url.rsplit("/", 1)[-1].split("#")[0]
    screenshot(page, "remote-vm-console", phone=False)


def test_an_operator_execs_into_a_container_and_reads_the_answer(site: Site):
    page = site.page
    page.goto(f"{site.node.url}/ui/nodes/{SERIAL}")  # leaving the console page ends it
    page.get_by_role("button", name=f"Exec c1 on {SERIAL}").click()
    page.wait_for_url("**/ui/remote/sessions/*")
    page.locator("#terminal[data-live='1']").wait_for(timeout=WAIT_MS)
    _type_until(page, "echo exec-$((6*7))-ok; hostname", "exec-42-ok", timeout_s=60)
    screenshot(page, "remote-container-exec", phone=False)
    page.goto(f"{site.node.url}/ui/remote")


def test_the_console_recording_replays_the_same_text_in_the_ui(site: Site):
    page, sid = site.page, site.console_session
    assert sid
    deadline = time.monotonic() + 30
    while site.node.api("GET", f"/remote/sessions/{sid}").json()["state"] != "ended":
        assert time.monotonic() < deadline, "the console session did not end"
        time.sleep(0.2)
    page.goto(f"{site.node.url}/ui/remote/sessions/{sid}")
    page.locator("#terminal[data-replayed='1']").wait_for(timeout=60_000)
    assert "console-42-ok" in _screen(page)
    screenshot(page, "remote-replay", phone=False)
    page.goto(f"{site.node.url}/ui/remote")
    row = page.locator(f"tr[data-session='{sid}']")
    assert "ended" in row.inner_text()
    with page.expect_download() as download:
        row.get_by_role("link", name="Download").click()
    header, *events = download.value.path().read_text().splitlines()
    assert json.loads(header)["version"] == 2
    # what the terminal printed, joined: a slow serial console splits lines across events
    printed = "".join(data for _, code, data in map(json.loads, events) if code == "o")
    assert "console-42-ok" in printed


def _outpost(site: Site, *args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    node = site.node
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "outpost_cli.main",
            "--url",
            node.url,
            "--token",
            node.token,
            "--ca",
            str(node.root_ca),
            *args,
        ],
        capture_output=True,
        timeout=120,
        **kw,
    )


def test_outpost_exec_in_the_real_container_returns_output_and_exit_code(site: Site):
    done = _outpost(site, "exec", SERIAL, "c1", "--", "sh", "-c", "cat /etc/hostname; exit 3")
    assert done.returncode == 3, done.stderr
    assert done.stdout.strip()  # the container's hostname
    ok = _outpost(site, "exec", SERIAL, "c1", "--", "echo", "from-the-container")
    assert (ok.returncode, ok.stdout) == (0, b"from-the-container\n")


def test_outpost_console_on_a_terminal_reaches_the_vm_shell(site: Site):
    node = site.node
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "outpost_cli.main",
            "--url",
            node.url,
            "--token",
            node.token,
            "--ca",
            str(node.root_ca),
            "console",
            SERIAL,
            "v1",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while b"cli-42-ok" not in seen:
            assert time.monotonic() < deadline, seen[-2000:]
            os.write(master, b"echo cli-$((6*7))-ok\r")
            end = time.monotonic() + 3
            while time.monotonic() < end and b"cli-42-ok" not in seen:
                import select

                if select.select([master], [], [], 0.2)[0]:
                    try:
                        seen += os.read(master, 65536)
                    except OSError as exc:  # EIO: the command exited
                        raise AssertionError(f"outpost console exited: {seen[-2000:]!r}") from exc
        os.write(master, b"\x1d")  # Ctrl-] leaves
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)

"""The web UI in a real browser (headless Debian Chromium via Playwright) against a real
HTTPS controller process and a real node agent running a busybox container on podman.

One story, in file order (the tests share the controller, the agent and the browser):
log in → claim a serial and download the onboarding bundle → the agent, started with that
bundle, onboards while the node page watches → upload an image, create a container app
(a field error first), assign it → RUNNING on the node page → a VM app whose download
(capped by a site policy) shows its percent on the node page, then RUNNING → restart
(confirmed) → the
audit entry → an app that exits at once shows as crash-looping on the overview, its log
grows on the open app page → delete it (confirmed) → a rollout started from the form runs
to the end → a git commit with a bad manifest is refused with its file:line → log out;
a viewer cannot change anything; a POST without CSRF token is refused; the node is
revoked (confirmed).  Screenshots (1400 px and a phone's 390 px) go to
``build/screenshots``; times are written to ``build/screenshots/timings.json`` (measured,
never asserted).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cli import main as controller_main
from tests.fixtures.browser import LAPTOP, SCREENSHOTS, screenshot
from tests.fixtures.controller_server import ControllerServer, running_controller
from tests.fixtures.libvirt_daemon import cleanup_node_domains

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SERIAL = "ui-node-1"
APP = "web"
WAIT_MS = 240_000
COMMAND = 'sh -c "echo hello from the ui test; while true; do sleep 5; done"'


@dataclass
class Site:
    ctl: ControllerServer
    base: Path
    passwords: dict[str, str]
    podman: Any
    libvirt_uri: str
    page: Any = None
    agent: subprocess.Popen[bytes] | None = None
    bundle: Path | None = None
    state_dir: Path | None = None
    timings: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.ctl.url

    def node(self) -> dict[str, Any]:
        return self.ctl.api("GET", f"/nodes/{SERIAL}").json()  # type: ignore[no-any-return]


def _adduser(data_dir: Path, name: str, role: str, out: Path) -> str:
    args = ["--data-dir", str(data_dir), "adduser", "--username", name, "--role", role]
    assert controller_main([*args, "--password-file", str(out)]) == 0
    return out.read_text().strip()


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, chromium, podman_engine, libvirt_uri
) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("ui")
    with running_controller(base, interval=1.0) as ctl:
        passwords = {
            role: _adduser(ctl.data_dir, f"ui-{role}", role, base / f"{role}.pw")
            for role in ("admin", "viewer")
        }
        s = Site(ctl, base, passwords, podman_engine, libvirt_uri)
        context = chromium.new_context(
            viewport=LAPTOP, ignore_https_errors=True, accept_downloads=True
        )
        context.set_default_timeout(30_000)
        s.page = context.new_page()
        try:
            yield s
        finally:
            context.close()
            if s.agent is not None and s.agent.poll() is None:
                s.agent.send_signal(signal.SIGTERM)
                try:
                    s.agent.wait(30)
                except subprocess.TimeoutExpired:
                    s.agent.kill()
            uuid = s.node().get("uuid")
            if uuid:
                podman_engine.remove_node(uuid)
                cleanup_node_domains(libvirt_uri, uuid)
            if s.state_dir is not None:
                shutil.rmtree(s.state_dir, ignore_errors=True)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS / "timings.json").write_text(json.dumps(s.timings, indent=2) + "\n")


def _login(page: Any, url: str, user: str, password: str) -> None:
    page.goto(f"{url}/ui/")
    assert "/ui/login" in page.url
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/ui/")


def _nav(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def _upload_image(page: Any, name: str, fmt: str, path: Path) -> None:
    """Upload ``path`` on the Images page; its flash says it was stored."""
    _nav(page, "Images")
    form = page.locator("form", has_text="Upload an image")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Format").select_option(fmt)
    form.get_by_label("Image file").set_input_files(str(path))
    form.get_by_role("button", name="Upload").click()
    assert f"Image {name} uploaded" in page.locator(".flash.info").inner_text()


def _labelled(page: Any) -> list[str]:
    """Visible form controls without an accessible label (should be none)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input,select,textarea')]
            .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length)
                         && !e.getAttribute('aria-label'))
            .map(e => e.name || e.id)"""
    )


def test_log_in_and_see_the_fleet(site: Site):
    page = site.page
    page.goto(f"{site.url}/ui/")
    screenshot(page, "01-login")
    t0 = time.monotonic()
    _login(page, site.url, "ui-admin", site.passwords["admin"])
    site.timings["login_s"] = round(time.monotonic() - t0, 3)
    assert page.get_by_role("heading", name="Fleet overview").is_visible()
    assert page.locator(".c-total .n").inner_text() == "0"
    screenshot(page, "02-overview-empty", phone=False)


def test_claim_a_serial_and_download_the_onboarding_bundle(site: Site):
    page = site.page
    _nav(page, "Onboarding")
    page.get_by_label("Serial number").fill("not a serial!")
    page.get_by_role("button", name="Claim", exact=True).click()
    serial_error = page.locator("#serial-error").inner_text()
    assert "letters, digits and . _ : -" in serial_error  # plain words, never a regex
    assert "pattern" not in serial_error
    page.get_by_label("Serial number").fill(SERIAL)
    page.get_by_role("button", name="Claim", exact=True).click()
    assert f"Serial {SERIAL} claimed" in page.locator(".flash.info").inner_text()
    assert _labelled(page) == []
    page.get_by_label("Batch name").fill("ui-test")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download bundle").click()
    archive = site.base / download.value.suggested_filename
    download.value.save_as(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(site.base / "bundle", filter="data")
    site.bundle = site.base / "bundle" / "outpost-onboarding-ui-test"
    assert (site.bundle / "onboarding.key").stat().st_mode & 0o777 == 0o600
    screenshot(page, "03-onboarding")


def test_watch_the_node_onboard(site: Site):
    assert site.bundle is not None
    state_dir = site.state_dir = Path(tempfile.mkdtemp(prefix="outpost-ui-", dir="/tmp"))
    state_dir.chmod(0o755)
    settings = site.base / "agent.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(state_dir),
                "bundle_dir": str(site.bundle),
                "serial": SERIAL,
                "libvirt_uri": site.libvirt_uri,
                "hypervisor": "tcg",  # the VM step runs under TCG (no KVM probe)
                "podman_global_args": list(site.podman.global_args),
                "config_interval_s": 1.0,
                "reconcile_interval_s": 1.0,
            }
        )
    )
    page = site.page
    page.goto(f"{site.url}/ui/nodes/{SERIAL}")
    assert page.locator("#live .badge").first.inner_text() == "claimed"
    t0 = time.monotonic()
    site.agent = subprocess.Popen(
        [sys.executable, "-m", "node_agent.cli", "--config", str(settings), "run"],
        stdout=(site.base / "agent.log").open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **site.podman.env},
    )
    # no reload: the page's own auto-refresh shows the node coming online
    page.locator("#live .badge", has_text="online").wait_for(timeout=60_000)
    site.timings["agent_start_to_online_on_page_s"] = round(time.monotonic() - t0, 3)
    assert site.node()["state"] == "registered"
    page.reload()
    assert page.locator("dt", has_text="hostname").is_visible()  # inventory
    screenshot(page, "04-node-onboarded")


def test_upload_an_image_and_create_a_container_app(site: Site, busybox_image):
    page = site.page
    _upload_image(page, "busybox", "oci-archive", busybox_image.path)
    assert busybox_image.sha256 in page.content()
    screenshot(page, "05-images")

    _nav(page, "Apps")
    page.get_by_role("link", name="New app").click()
    page.get_by_label("Name", exact=True).fill("Web App")
    page.get_by_label("Kind", exact=True).select_option("container")
    page.get_by_label("Image", exact=True).select_option("busybox")
    page.get_by_label("Memory (MiB)").fill("64")
    page.get_by_label("Command (shell words)").fill(COMMAND)
    page.get_by_role("button", name="Create app").click()
    error = page.locator("#name-error")
    assert "lower-case letters, digits and dashes" in error.inner_text()
    assert "pattern" not in error.inner_text()
    assert page.get_by_label("Name", exact=True).get_attribute("aria-invalid") == "true"
    screenshot(page, "06-app-form-error")
    page.get_by_label("Name", exact=True).fill(APP)
    page.get_by_role("button", name="Create app").click()
    page.wait_for_url(f"{site.url}/ui/apps/{APP}")

    page.get_by_label("Node serial").fill(SERIAL)
    page.get_by_role("button", name="Assign").click()
    site.timings["_assigned_at"] = time.monotonic()
    assert f"{APP} assigned to {SERIAL}" in page.locator(".flash.info").inner_text()
    screenshot(page, "07-app")


def test_the_app_reaches_running_on_the_node_page(site: Site):
    page = site.page
    page.goto(f"{site.url}/ui/nodes/{SERIAL}")
    state = page.locator(f'tr[data-app="{APP}"] [data-state]')
    api_running = None
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        assert site.agent is not None and site.agent.poll() is None
        apps = {a["name"]: a["state"] for a in site.node()["info"].get("apps", [])}
        if api_running is None and apps.get(APP) == "RUNNING":
            api_running = time.monotonic()
        if state.count() and state.inner_text().strip() == "RUNNING":
            break
        page.wait_for_timeout(500)  # the page refreshes itself every 10 s
    else:
        log = (site.base / "agent.log").read_text()[-3000:]
        pytest.fail(f"{APP} never showed RUNNING: {site.node()['info']}\n{log}")
    assigned = site.timings.pop("_assigned_at")
    site.timings["assign_to_running_in_api_s"] = round(
        (api_running or time.monotonic()) - assigned, 3
    )
    site.timings["assign_to_running_on_page_s"] = round(time.monotonic() - assigned, 3)
    (container,) = site.podman.ps(site.node()["uuid"])
    assert container["State"] == "running"
    assert container["Labels"]["outpost.name"] == APP
    screenshot(page, "08-node-running")


VM_APP = "vm1"
DOWNLOAD_S = 30.0
"""The VM image's download is capped by a site policy to last about this long, so the node
page (refreshed every 10 s) shows its percent at least twice."""


def test_a_vm_app_shows_its_download_percent_live_then_runs(site: Site, testvm_disk_image):
    size = testvm_disk_image.path.stat().st_size
    policy = {"name": "slow-link", "download_rate_bps": max(size / DOWNLOAD_S, 1024.0)}
    assert site.ctl.api("POST", "/site-policies", json=policy).status_code == 201
    page = site.page
    _upload_image(page, "testvm", "qcow2", testvm_disk_image.path)
    _nav(page, "Apps")
    page.get_by_role("link", name="New app").click()
    page.get_by_label("Name", exact=True).fill(VM_APP)
    page.get_by_label("Kind", exact=True).select_option("vm")
    page.get_by_label("Image", exact=True).select_option("testvm")
    page.get_by_label("Memory (MiB)").fill("128")
    page.get_by_role("button", name="Create app").click()
    page.wait_for_url(f"{site.url}/ui/apps/{VM_APP}")
    page.get_by_label("Node serial").fill(SERIAL)
    page.get_by_role("button", name="Assign").click()
    assert f"{VM_APP} assigned to {SERIAL}" in page.locator(".flash.info").inner_text()

    page.goto(f"{site.url}/ui/nodes/{SERIAL}")
    row = page.locator(f'tr[data-app="{VM_APP}"]')
    t0 = time.monotonic()
    # no reload from here: the node page refreshes itself
    row.locator("progress").wait_for(timeout=WAIT_MS)
    done, total = (float(row.locator("progress").get_attribute(a) or 0) for a in ("value", "max"))
    assert total == size and 0 <= done < total
    # percent, bytes and (from the node's second report on) the rate, as the bytes arrive
    row.locator("[data-download]", has_text=re.compile(r"^\d+% · .+ / .+ at .+/s$")).wait_for(
        timeout=WAIT_MS
    )
    screenshot(page, "08b-node-vm-downloading")
    row.locator("[data-state]", has_text="RUNNING").wait_for(timeout=WAIT_MS)
    site.timings["vm_download_seen_to_running_on_page_s"] = round(time.monotonic() - t0, 3)
    assert row.locator("progress").count() == 0
    # the VM has shown what it had to: it leaves, so the rest of the day runs beside no guest
    assert site.ctl.api("DELETE", f"/apps/{VM_APP}").ok
    assert site.ctl.api("DELETE", "/site-policies/slow-link").ok


def test_restart_the_app_with_confirmation(site: Site):
    page = site.page
    assert site.state_dir is not None
    generation = _checkpointed(site.state_dir)["generation"]  # type: ignore[index]
    (container,) = site.podman.ps(site.node()["uuid"])
    page.get_by_role("button", name=f"Restart {APP}").click()
    assert page.get_by_role("heading", name="Restart the app?").is_visible()
    screenshot(page, "09-confirm-restart", phone=False)
    t0 = time.monotonic()
    page.get_by_role("button", name="Yes, restart").click()
    assert "Restart of app web requested (counter 1)" in page.locator(".flash.info").inner_text()
    (inst,) = site.node()["instances"]
    assert inst["restart_counter"] == 1
    # the node verifies and checkpoints the config carrying the raised counter
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        doc = _checkpointed(site.state_dir)
        if doc and [a["restart_counter"] for a in doc["apps"]] == [1]:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the node did not checkpoint the restart: {doc}")
    site.timings["restart_to_node_checkpoint_s"] = round(time.monotonic() - t0, 3)
    assert doc["generation"] > generation
    page.locator(f'tr[data-app="{APP}"] [data-state]', has_text="RUNNING").wait_for()
    # whether the agent acts on the counter is the agent's business: recorded only
    time.sleep(3)
    (again,) = site.podman.ps(site.node()["uuid"])
    site.timings["container_restarted_by_agent"] = again["StartedAt"] != container["StartedAt"]


def _checkpointed(state_dir: Path) -> dict[str, Any] | None:
    """The desired state in the agent's checkpoint (signed envelope; not re-verified here)."""
    path = state_dir / "checkpoint.json"
    if not path.exists():
        return None
    wire = json.loads(path.read_text())["envelope"]
    return json.loads(base64.b64decode(wire["payload"]))["body"]  # type: ignore[no-any-return]


def test_the_audit_log_records_the_restart(site: Site):
    page = site.page
    _nav(page, "Audit log")
    page.get_by_label("Action").select_option("node.restart")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == 1
    text = rows.first.inner_text()
    assert "user:ui-admin" in text and SERIAL in text and "app=web" in text
    assert "counter=1" in text
    page.get_by_label("Action").select_option("")
    page.get_by_role("button", name="Filter").click()
    screenshot(page, "10-audit")


CRASHER = "boom"


def test_a_crash_looping_app_shows_on_the_overview_and_its_log_grows_live(site: Site):
    app = {
        "name": CRASHER,
        "kind": "container",
        "image": "busybox",
        "resources": {"memory_mib": 32},
        "command": ["sh", "-c", "echo boom; exit 3"],
    }
    assert site.ctl.api("POST", "/apps", json=app).status_code == 201
    assert site.ctl.api("POST", f"/nodes/{SERIAL}/apps", json={"app": CRASHER}).ok
    page = site.page
    page.goto(f"{site.url}/ui/")
    t0 = time.monotonic()
    # no reload: the overview refreshes itself
    page.get_by_text(f"app {CRASHER} crash-looping").wait_for(timeout=WAIT_MS)
    site.timings["assign_to_crashloop_on_overview_s"] = round(time.monotonic() - t0, 3)
    screenshot(page, "17-overview-crashloop")
    page.goto(f"{site.url}/ui/apps/{CRASHER}")
    panel = page.locator("#app-logs")

    def boom_lines() -> int:
        return int(panel.inner_text().count("boom"))

    page.wait_for_function(
        "() => (document.querySelector('#app-logs').innerText.match(/boom/g) || []).length > 0",
        timeout=WAIT_MS,
    )
    seen = boom_lines()
    page.wait_for_function(  # a later run's line arrives in the open page
        "n => (document.querySelector('#app-logs').innerText.match(/boom/g) || []).length > n",
        arg=seen,
        timeout=WAIT_MS,
    )
    assert "stdout F" not in panel.inner_text()  # the runtime's prefix is not shown
    page.locator("#app-events", has_text="crash-looping").wait_for(timeout=WAIT_MS)
    screenshot(page, "18-app-crashloop-logs")


def test_delete_an_app_after_confirming_what_it_will_do(site: Site):
    page = site.page
    page.goto(f"{site.url}/ui/apps/{CRASHER}")
    page.get_by_role("link", name="Delete app…").click()
    assert page.get_by_role("heading", name=f"Delete app {CRASHER}").is_visible()
    assert "removed from its 1 node" in page.content()
    screenshot(page, "19-confirm-delete", phone=False)
    page.get_by_role("button", name=f"Yes, delete app {CRASHER}").click()
    assert f"App {CRASHER} deleted" in page.locator(".flash.info").inner_text()
    assert site.ctl.api("GET", f"/apps/{CRASHER}").status_code == 404
    deadline = time.monotonic() + WAIT_MS / 1000
    while any(
        c["Labels"].get("outpost.name") == CRASHER for c in site.podman.ps(site.node()["uuid"])
    ):
        assert time.monotonic() < deadline, "the node kept the deleted app's container"
        time.sleep(0.5)


def test_a_rollout_started_from_the_form_runs_to_the_end(site: Site):
    page = site.page
    _nav(page, "Rollouts")
    page.locator("#start-app").select_option(APP)
    page.get_by_role("button", name="Choose the new version and rings").click()
    page.get_by_label("Environment (KEY=value, one per line)").fill("VERSION=2")
    ring = page.get_by_role("group", name="Ring 1", exact=True)
    ring.get_by_label("Soak (s)").fill("3")
    ring.get_by_label("Deadline (s)").fill("600")
    page.get_by_role("button", name="Start the rollout").click()
    assert "started" in page.locator(".flash.info").inner_text()
    t0 = time.monotonic()
    # the rollout page refreshes itself while the rollout runs
    page.locator(".badge", has_text="succeeded").wait_for(timeout=WAIT_MS)
    site.timings["rollout_start_to_succeeded_on_page_s"] = round(time.monotonic() - t0, 3)
    assert site.ctl.api("GET", f"/apps/{APP}").json()["env"] == {"VERSION": "2"}
    screenshot(page, "25-rollout-succeeded")


def test_a_refused_git_commit_shows_its_file_and_line(site: Site):
    from tests.unit.test_gitops_sync import Repo

    repo = Repo(site.base / "fleet-repo")
    repo.commit(
        {
            "sites/lab/apps.yaml": (
                "kind: App\n"
                "spec:\n"
                "  name: from-git\n"
                "  kind: container\n"
                "  image: busybox\n"
                "  memory_in_bananas: 3\n"
            )
        }
    )
    page = site.page
    _nav(page, "Git")
    page.get_by_label("Repository URL").fill(str(repo.path))
    page.get_by_label("Sync every (s)").fill("0")
    page.get_by_role("button", name="Save the source").click()
    assert "Git source saved" in page.locator(".flash.info").inner_text()
    page.get_by_role("button", name="Sync now").click()
    assert "refused" in page.locator(".flash.error").inner_text()
    errors = page.locator("#err-h").locator("xpath=..").inner_text()
    assert "sites/lab/apps.yaml:6" in errors, errors
    assert site.ctl.api("GET", "/apps/from-git").status_code == 404
    screenshot(page, "26-git-refused")


def test_other_pages_render_at_1400_and_390_px(site: Site):
    page = site.page
    for path, name in (
        ("/ui/", "11-overview"),
        ("/ui/nodes", "12-nodes"),
        ("/ui/apps", "13-apps"),
        (f"/ui/apps/{APP}/edit", "14-app-edit"),
        ("/ui/users", "15-users"),
    ):
        page.goto(f"{site.url}{path}")
        assert page.locator("h1").count() == 1
        assert _labelled(page) == [], path
        screenshot(page, name)
    page.goto(f"{site.url}/ui/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"


def test_a_post_without_csrf_token_is_refused(site: Site):
    page = site.page
    resp = page.request.post(
        f"{site.url}/ui/onboarding/claim",
        form={"serial": "sn-no-csrf"},
        headers={"Referer": f"{site.url}/ui/onboarding"},
    )
    assert resp.status == 400
    assert site.ctl.api("GET", "/nodes/sn-no-csrf").status_code == 404


def test_log_out(site: Site):
    page = site.page
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{site.url}/ui/login")
    assert "You are logged out." in page.content()
    page.goto(f"{site.url}/ui/nodes/{SERIAL}")
    assert "/ui/login" in page.url


def test_a_viewer_cannot_change_anything(site: Site, chromium):
    context = chromium.new_context(viewport=LAPTOP, ignore_https_errors=True)
    try:
        page = context.new_page()
        _login(page, site.url, "ui-viewer", site.passwords["viewer"])
        page.goto(f"{site.url}/ui/nodes/{SERIAL}")
        assert page.get_by_role("button", name=f"Restart {APP}").count() == 0
        assert page.locator("form[method=post]").count() == 1  # log out only
        screenshot(page, "16-node-as-viewer", phone=False)
        token = page.locator("form.who input[name=csrf_token]").get_attribute("value")
        counter = site.node()["instances"][0]["restart_counter"]
        for path, form in (
            (f"/ui/nodes/{SERIAL}/command", {"command": "restart", "app": APP, "confirmed": "yes"}),
            ("/ui/onboarding/claim", {"serial": "sn-viewer"}),
            (f"/ui/apps/{APP}/unassign/{SERIAL}", {}),
        ):
            resp = page.request.post(
                f"{site.url}{path}",
                form={"csrf_token": token, **form},
                headers={"Referer": f"{site.url}/ui/"},
            )
            assert resp.status == 403, path
        assert site.node()["instances"][0]["restart_counter"] == counter
        assert site.ctl.api("GET", "/nodes/sn-viewer").status_code == 404
    finally:
        context.close()


def test_revoke_the_node_after_confirming(site: Site):
    page = site.page
    _login(page, site.url, "ui-admin", site.passwords["admin"])
    page.goto(f"{site.url}/ui/nodes/{SERIAL}")
    page.get_by_role("link", name="Revoke…").click()
    assert page.get_by_role("heading", name=f"Revoke node {SERIAL}").is_visible()
    page.get_by_label("Reason").fill("retired in the UI test")
    screenshot(page, "27-confirm-revoke", phone=False)
    page.get_by_role("button", name=f"Yes, revoke node {SERIAL}").click()
    assert f"Node {SERIAL} revoked" in page.locator(".flash.info").inner_text()
    trust = site.ctl.api("GET", f"/trust/nodes/{SERIAL}").json()
    assert trust["state"] == "revoked", trust


def test_screenshots_of_a_busy_fleet(site: Site):
    """60 more nodes (seeded into the database: inventories, a day of metrics, logs)."""
    from benchmarks.ui_fleet import seed_fleet
    from controller.cli import _settings
    from controller.store.database import Database

    fleet = seed_fleet(Database(_settings(site.ctl.data_dir).database_url), 60, "site", audit=200)
    page = site.page
    page.goto(f"{site.url}/ui/")
    assert page.locator(".c-total .n").inner_text() == "61"
    screenshot(page, "20-fleet-overview")
    page.goto(f"{site.url}/ui/nodes?status=attention")
    screenshot(page, "21-fleet-attention", phone=False)
    page.goto(f"{site.url}/ui/nodes/{fleet.detailed}?window=24h")
    assert page.locator("svg.chart polyline").count() == 5
    assert page.locator("progress").count() == 1
    screenshot(page, "22-fleet-node")
    page.goto(f"{site.url}/ui/nodes")
    page.get_by_label("Search").fill("site=lab")
    page.get_by_role("button", name="Filter").click()
    screenshot(page, "23-fleet-search", phone=False)
    page.goto(f"{site.url}/ui/apps")
    screenshot(page, "24-fleet-apps", phone=False)

"""Hostile input to the web UI: every bad form value is a 4xx with the field named in plain
words and what it allows (never a regex or pydantic's wording), and nothing is stored;
``next=`` never injects a header; typed path parameters."""

from __future__ import annotations

import html as html_lib
import re
import threading
from typing import Any

import pytest
from sqlalchemy import select

from controller.app import create_app
from controller.cli import _settings
from controller.domain.users import create_user
from controller.store.models import App, Image
from tests.fixtures.browser import PASSWORDS, UiClient
from tests.fixtures.browser import app_form as _form
from tests.fixtures.controller_server import free_port, init_controller

RAW_WORDING = re.compile(r"String should|Input should|should match pattern|\^\[|pydantic|type=")


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> UiClient:  # type: ignore[no-untyped-def]
    cdir = init_controller(tmp_path_factory.mktemp("ctl") / "controller", free_port())
    app = create_app(_settings(cdir.data_dir))
    with app.extensions["outpost"].db.transaction() as s:
        create_user(s, "operator1", "operator", PASSWORDS["operator"])
        s.add(Image(name="busybox", sha256="a" * 64, size=10, format="oci-archive"))
    client = UiClient(app)
    assert client.login("operator1", PASSWORDS["operator"]).status_code == 302
    return client


def _error(page: str, field: str) -> str:
    found = re.search(rf'<div class="error" id="{field}-error">(.*?)</div>', page, re.S)
    assert found, f"no error next to {field}"
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).strip()


def _apps(ui: UiClient) -> list[str]:
    with ui.app.extensions["outpost"].db.transaction() as s:
        return list(s.scalars(select(App.name)))


BAD_APP_FORMS: list[tuple[dict[str, str], str, str]] = [
    ({"start_delay_s": "sNaN"}, "start_delay_s", "Start delay (s): a number of seconds from 0"),
    ({"start_delay_s": "inf"}, "start_delay_s", "from 0 to 3600"),
    ({"start_delay_s": "1e400"}, "start_delay_s", "from 0 to 3600"),
    ({"start_delay_s": "99999"}, "start_delay_s", "from 0 to 3600"),
    ({"networks": "net-a ²:80"}, "networks", "host:guest or host:guest/udp"),
    ({"networks": "net-a 99999999:80"}, "networks", "1 to 65535"),
    ({"vcpus": "²"}, "vcpus", "vCPUs: a whole number from 1 to 64"),
    ({"vcpus": "\u0661"}, "vcpus", "vCPUs: a whole number from 1 to 64"),
    ({"vcpus": "0"}, "vcpus", "vCPUs: a whole number from 1 to 64"),
    ({"vcpus": "9" * 30}, "vcpus", "a whole number from 1 to 64"),
    ({"memory_mib": "lots"}, "memory_mib", "Memory (MiB): a whole number of MiB from 16"),
    ({"name": "Web App"}, "name", "Name: lower-case letters, digits and dashes, 1 to 63"),
    ({"env": "1BAD=x"}, "env", "a key is letters, digits and _"),
    ({"selector": "Site=lab"}, "selector", "a key is lower-case letters"),
    ({"adapters": "gpu nope"}, "adapters", "a PCI address"),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD_APP_FORMS)
def test_a_bad_app_form_value_is_422_in_plain_words(ui, change, field, message):
    resp = ui.post("/ui/apps/new", _form(**change))
    assert resp.status_code == 422, change
    shown = _error(resp.get_data(as_text=True), field)
    assert message in shown, (change, shown)
    assert not RAW_WORDING.search(shown), shown
    assert "web" not in _apps(ui)


def test_the_app_form_shows_the_limits_beside_the_fields(ui):
    page = ui.get("/ui/apps/new").get_data(as_text=True)
    for limit in ("from 1 to 64", "from 0 to 3600", "1 to 63 characters", "1 to 65535"):
        assert limit in page


def test_a_good_app_form_after_bad_ones_is_stored(ui):
    assert ui.post("/ui/apps/new", _form(name="fine")).status_code == 302
    assert "fine" in _apps(ui)


@pytest.mark.parametrize(
    ("change", "field"),
    [({"size": "²"}, "size"), ({"size": "-1"}, "size"), ({"sha256": "xyz"}, "sha256")],
)
def test_a_bad_image_registration_is_422_in_plain_words(ui, change, field):
    form = {"name": "ext", "format": "raw", "sha256": "b" * 64, "size": "1", "url": "https://x/"}
    data = {f"reg-{k}": v for k, v in (form | change).items()}
    resp = ui.post("/ui/images/register", data)
    assert resp.status_code == 422
    shown = _error(resp.get_data(as_text=True), f"reg-{field}")
    assert not RAW_WORDING.search(shown), shown


def test_login_next_with_a_header_injection_goes_to_the_overview(ui):
    resp = ui.get("/ui/login?next=/ui/%0D%0ASet-Cookie:x=1")
    assert resp.status_code == 302 and resp.headers["Location"] == "/ui/"
    assert "x=1" not in resp.headers.get("Set-Cookie", "")


@pytest.mark.parametrize("rid", ["³", "\u0661", "1x"])
def test_a_rollout_page_with_a_non_ascii_id_is_404(ui, rid):
    assert ui.get(f"/ui/rollouts/{rid}").status_code == 404


def test_hints_never_quote_a_regex(ui: Any) -> None:
    page = ui.get("/ui/apps/new").get_data(as_text=True)
    text = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "[a-z0-9]" not in text and "^" not in text


def test_the_same_app_created_from_four_sessions_at_once_is_created_once(ui):
    clients = [UiClient(ui.app) for _ in range(4)]
    for c in clients:
        assert c.login("operator1", PASSWORDS["operator"]).status_code == 302
        c.get("/ui/apps/new")
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def create(c: UiClient) -> None:
        barrier.wait()
        statuses.append(c.post("/ui/apps/new", _form(name="twin")).status_code)

    threads = [threading.Thread(target=create, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [302, 422, 422, 422]
    assert _apps(ui).count("twin") == 1

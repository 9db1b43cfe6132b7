"""Web UI log panels and downloads: the newest line last, live, runtime prefixes off."""

from __future__ import annotations

import gzip
import json
import re
import uuid as uuidlib

import pytest

from controller.store.models import App, Assignment, Image, LogBatch, Node, utcnow
from controller.ui import log_lines

WEB = "11111111-2222-4333-8444-555555555555"
OTHER = "99999999-2222-4333-8444-555555555555"
T0 = 1_700_000_000.0


def _db(app):  # type: ignore[no-untyped-def]
    return app.extensions["outpost"].db


def _batch(node: Node, source: str, lines: list[tuple[float, str, str]]) -> LogBatch:
    raw = "\n".join(json.dumps({"ts": ts, "level": lv, "msg": msg}) for ts, lv, msg in lines)
    return LogBatch(
        node_id=node.id, source=source, lines=len(lines), data_gz=gzip.compress(raw.encode())
    )


def _fleet(app, agent_lines: int = 300) -> None:  # type: ignore[no-untyped-def]
    """Nodes sn-1 and sn-2 run app web; sn-1's agent said ``agent_lines`` lines in three
    batches; both nodes' web consoles (with and without podman's prefix) and another app's."""
    with _db(app).transaction() as s:
        image = Image(name="busybox", sha256="a" * 64, size=1, format="oci-archive")
        s.add(image)
        s.flush()
        web = App(uuid=WEB, name="web", kind="container", image_id=image.id, spec={})
        other = App(uuid=OTHER, name="other", kind="container", image_id=image.id, spec={})
        s.add_all([web, other])
        nodes = []
        for serial in ("sn-1", "sn-2"):
            node = Node(serial=serial, uuid=str(uuidlib.uuid4()), state="registered")
            node.last_seen, node.info = utcnow(), {}
            s.add(node)
            s.flush()
            s.add(Assignment(node_id=node.id, app_id=web.id))
            nodes.append(node)
        one, two = nodes
        per = agent_lines // 3
        for b in range(3):
            rows = [(T0 + i, "INFO", f"agent line {i:03d}") for i in range(b * per, (b + 1) * per)]
            s.add(_batch(one, "agent", rows))
        s.add(
            _batch(
                one,
                f"app:{WEB}",
                [
                    (T0 + 1000, "INFO", "2026-12-03T10:00:00.123456789Z stdout F hello from one"),
                    (T0 + 1001, "INFO", "stderr F <oops> on one"),
                ],
            )
        )
        s.add(_batch(two, f"app:{WEB}", [(T0 + 999, "INFO", "stdout P hello from two")]))
        s.add(_batch(two, f"app:{OTHER}", [(T0 + 998, "INFO", "not web's line")]))
        s.add(_batch(one, "agent", [(T0 + 2000, "WARNING", "disk nearly full")]))
        one.log_seq = {"agent": 3, f"app:{WEB}": 0}


def _panel(html: str, panel_id: str) -> list[str]:
    found = re.search(rf'<pre id="{panel_id}"[^>]*>(.*?)</pre>', html, re.S)
    assert found, f"no log panel {panel_id}"
    return found.group(1).splitlines()


def _text(line: str) -> str:
    """A shown line without its time and level."""
    return line.split(None, 2)[2]


def test_the_log_panel_shows_the_newest_line_last(ui_client, ui_app):
    _fleet(ui_app)
    html = ui_client("viewer").get("/ui/nodes/sn-1?source=agent").get_data(as_text=True)
    lines = _panel(html, "node-logs")
    assert len(lines) == 200
    assert lines[-1].endswith("disk nearly full")
    assert lines[-2].endswith("agent line 299") and lines[0].endswith("agent line 101")
    numbers = [int(x.rsplit(" ", 1)[1]) for x in lines[:-1]]
    assert numbers == sorted(numbers)


def test_the_log_panel_follows_the_tail_by_itself(ui_client, ui_app):
    _fleet(ui_app)
    html = ui_client("viewer").get("/ui/nodes/sn-1").get_data(as_text=True)
    assert re.search(r'<pre id="node-logs"[^>]*\bdata-refresh\b[^>]*\bdata-follow\b', html)
    assert re.search(r'<div id="live" data-refresh>', html) and "data-refresh-control" in html


def test_runtime_prefixes_are_not_shown_in_the_log_panel(ui_client, ui_app):
    _fleet(ui_app)
    html = ui_client("viewer").get(f"/ui/nodes/sn-1?source=app:{WEB}").get_data(as_text=True)
    lines = _panel(html, "node-logs")
    assert [_text(x) for x in lines] == [
        "[web] hello from one",
        "[web] &lt;oops&gt; on one",
    ]
    assert "stdout F" not in html and "stderr F" not in html


def test_the_level_filter_keeps_that_level_and_worse(ui_client, ui_app):
    _fleet(ui_app)
    ui = ui_client("viewer")
    html = ui.get("/ui/nodes/sn-1?level=WARNING").get_data(as_text=True)
    assert [_text(x) for x in _panel(html, "node-logs")] == ["disk nearly full"]
    link = re.search(r'href="(/ui/nodes/sn-1/logs\.txt[^"]*)"', html)
    assert link and "level=WARNING" in link.group(1)
    text = ui.get(link.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert text.splitlines()[-1].endswith("WARNING disk nearly full") and "INFO" not in text


def test_the_download_has_every_line_newest_last_as_a_text_attachment(
    ui_client, ui_app, monkeypatch
):
    monkeypatch.setattr(log_lines, "DOWNLOAD_BATCHES", 2)  # several queries
    _fleet(ui_app)
    resp = ui_client("viewer").get("/ui/nodes/sn-1/logs.txt")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="node-sn-1.log"'
    lines = resp.get_data(as_text=True).splitlines()
    assert len(lines) == 300 + 2 + 1
    assert lines[0].startswith("2023-11-14T22:13:20.000Z INFO  agent line 000")
    assert [x.rsplit(" ", 1)[1] for x in lines[:300]] == [f"{i:03d}" for i in range(300)]
    assert lines[300].endswith("[web] hello from one") and "stdout" not in lines[300]
    assert lines[-1].endswith("disk nearly full")


def test_the_app_download_has_each_line_after_its_node(ui_client, ui_app):
    _fleet(ui_app)
    resp = ui_client("viewer").get("/ui/apps/web/logs.txt")
    assert resp.headers["Content-Disposition"] == 'attachment; filename="app-web.log"'
    assert [_text(x) for x in resp.get_data(as_text=True).splitlines()] == [
        "[sn-1] hello from one",
        "[sn-1] <oops> on one",
        "[sn-2] hello from two",
    ]


@pytest.mark.parametrize("path", ["/ui/nodes/sn-1/logs.txt", "/ui/apps/web/logs.txt"])
def test_a_log_download_is_refused_without_a_login(ui_app, path):
    _fleet(ui_app)
    resp = ui_app.test_client().get(path, base_url="https://localhost")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/ui/login?next=")
    assert "line" not in resp.get_data(as_text=True)


def test_the_app_page_is_live_and_shows_the_apps_log(ui_client, ui_app):
    _fleet(ui_app)
    html = ui_client("viewer").get("/ui/apps/web").get_data(as_text=True)
    assert "data-refresh-control" in html
    live = re.search(r'<div id="live" data-refresh>(.*?)</div>\s*</section>', html, re.S)
    assert live and "sn-1" in live.group(1) and "sn-2" in live.group(1)
    lines = [_text(x) for x in _panel(html, "app-logs")]
    assert lines == [
        "[sn-2] hello from two",
        "[sn-1] hello from one",
        "[sn-1] &lt;oops&gt; on one",
    ]
    assert "not web" not in html and "agent line" not in html
    assert 'href="/ui/apps/web/logs.txt"' in html

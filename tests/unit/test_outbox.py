"""The agent's on-disk outbox and log shipper: nothing lost, bounded, ordered."""

from __future__ import annotations

import base64
import gzip
import json
import logging

import pytest

from node_agent.log_shipper import AgentLogBuffer, LogShipper
from node_agent.outbox import Outbox
from protocol.messages import LogBatchMessage


def _lines(batch: dict) -> list[dict]:  # type: ignore[type-arg]
    raw = gzip.decompress(base64.b64decode(batch["lines_gz_b64"]))
    return [json.loads(x) for x in raw.splitlines()]


def test_the_latest_info_survives_a_restart_until_delivered(tmp_path):
    Outbox(tmp_path).put_info({"generation": 1})
    Outbox(tmp_path).put_info({"generation": 2})
    again = Outbox(tmp_path)
    assert again.pending_info() == {"generation": 2}
    again.info_delivered({"generation": 2})
    assert Outbox(tmp_path).pending_info() is None


def test_an_info_superseded_while_sending_is_kept(tmp_path):
    box = Outbox(tmp_path)
    box.put_info({"generation": 1})
    box.put_info({"generation": 2})
    box.info_delivered({"generation": 1})
    assert box.pending_info() == {"generation": 2}


def test_log_batches_are_delivered_in_order_and_kept_on_failure(tmp_path):
    box = Outbox(tmp_path)
    for _ in range(3):
        box.put_logs({"source": "agent", "seq": box.next_seq(), "lines_gz_b64": ""})
    sent: list[int] = []

    def flaky(batch):  # type: ignore[no-untyped-def]
        if len(sent) == 2:
            raise ConnectionError("controller gone")
        sent.append(batch["seq"])

    with pytest.raises(ConnectionError):
        box.deliver_logs(flaky)
    assert sent == [0, 1] and box.queued() == 1
    assert Outbox(tmp_path).deliver_logs(lambda b: sent.append(b["seq"])) == 1
    assert sent == [0, 1, 2]


def test_sequence_numbers_keep_rising_after_the_queue_empties(tmp_path):
    box = Outbox(tmp_path)
    box.put_logs({"source": "agent", "seq": box.next_seq(), "lines_gz_b64": ""})
    box.deliver_logs(lambda b: None)
    assert Outbox(tmp_path).next_seq() == 1


def test_the_log_queue_is_bounded_dropping_the_oldest(tmp_path):
    box = Outbox(tmp_path, max_batches=3)
    for _ in range(5):
        box.put_logs({"source": "agent", "seq": box.next_seq(), "lines_gz_b64": ""})
    seqs: list[int] = []
    box.deliver_logs(lambda b: seqs.append(b["seq"]))
    assert seqs == [2, 3, 4] and box.dropped == 2


def test_agent_records_become_a_valid_log_batch(tmp_path):
    buffer = AgentLogBuffer()
    logger = logging.getLogger("outpost.test.shipper")
    logger.addHandler(buffer)
    logger.setLevel(logging.INFO)
    logger.info("app %s RUNNING", "web")
    box = Outbox(tmp_path)
    assert LogShipper(tmp_path, box, buffer).collect() == 1
    (batch,) = [json.loads(p.read_text()) for p in (tmp_path / "outbox/logs").iterdir()]
    LogBatchMessage.model_validate(batch)
    assert _lines(batch)[0]["msg"].endswith("app web RUNNING")


def test_app_console_lines_are_shipped_once_across_restarts(tmp_path):
    console = tmp_path / "apps" / "00000000-0000-4000-8000-000000000001" / "console.log"
    console.parent.mkdir(parents=True)
    console.write_text("boot 1\nboot 2\npartial")
    box = Outbox(tmp_path)
    LogShipper(tmp_path, box, AgentLogBuffer()).collect()
    with console.open("a") as fh:
        fh.write(" line\nboot 3\n")
    LogShipper(tmp_path, box, AgentLogBuffer()).collect()
    batches: list[dict] = []  # type: ignore[type-arg]
    box.deliver_logs(batches.append)
    msgs = [x["msg"] for b in batches if b["source"].startswith("app:") for x in _lines(b)]
    assert msgs == ["boot 1", "boot 2", "partial line", "boot 3"]


def test_a_truncated_console_log_is_read_from_the_start(tmp_path):
    console = tmp_path / "apps" / "00000000-0000-4000-8000-000000000001" / "console.log"
    console.parent.mkdir(parents=True)
    console.write_text("a long first line\n")
    box = Outbox(tmp_path)
    shipper = LogShipper(tmp_path, box, AgentLogBuffer())
    shipper.collect()
    console.write_text("new\n")
    shipper.collect()
    batches: list[dict] = []  # type: ignore[type-arg]
    box.deliver_logs(batches.append)
    assert [x["msg"] for x in _lines(batches[-1])] == ["new"]


def test_a_containers_console_lines_are_shipped_without_the_runtime_prefix(tmp_path):
    console = tmp_path / "apps" / "00000000-0000-4000-8000-000000000001" / "console.log"
    console.parent.mkdir(parents=True)
    console.write_text(
        "2026-12-03T10:00:00.123456789Z stdout F hello\n"
        "2026-12-03T10:00:01.000000000+00:00 stderr P part \n"
        "2026-12-03T10:00:01.500000000+00:00 stderr F one\n"
    )
    box = Outbox(tmp_path)
    LogShipper(tmp_path, box, AgentLogBuffer()).collect()
    batches: list[dict] = []  # type: ignore[type-arg]
    box.deliver_logs(batches.append)
    (app,) = [b for b in batches if b["source"].startswith("app:")]
    LogBatchMessage.model_validate(app)
    assert [x["msg"] for x in _lines(app)] == ["hello", "part one"]

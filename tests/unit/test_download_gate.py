"""The node's download policy in the image store: a rate share held by a token bucket and
a download window (a fake clock whose sleeps move time; real HTTP is in the lab test)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from node_agent.download_gate import DownloadDeferred, DownloadGate
from node_agent.image_store import ImageStore
from protocol.desired_state import ImageRef
from protocol.downloads import DownloadPolicy
from protocol.windows import Window
from tests.fakes import FakeClock
from tests.unit.test_image_store import FakeClient

DATA = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(DATA).hexdigest()
REF = ImageRef(name="img", sha256=SHA, size=len(DATA), format="raw", url=f"http://x/{SHA}")


class SleepingClock(FakeClock):
    """A fake clock whose ``sleep`` moves it (what the gate waits is what time passes)."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.slept = 0.0

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.advance(seconds)


def _store(tmp_path, clock: SleepingClock) -> tuple[ImageStore, DownloadGate]:  # type: ignore[no-untyped-def]
    gate = DownloadGate(clock, clock.sleep)
    client = FakeClient({REF.url: DATA})
    return ImageStore(tmp_path / "images", client, 1 << 30, gate=gate), gate  # type: ignore[arg-type]


def test_a_download_takes_its_size_over_the_rate_share(tmp_path):
    clock = SleepingClock(0.0)
    store, gate = _store(tmp_path, clock)
    gate.set_policy(DownloadPolicy(rate_bps=256 * 1024))
    store.ensure(REF)
    # 1 MiB at 256 KiB/s: 4 s, less the bucket's initial burst (a quarter second)
    assert clock.slept == pytest.approx(4.0 - 0.25, abs=0.05)


def test_without_a_policy_nothing_waits(tmp_path):
    clock = SleepingClock(0.0)
    store, _ = _store(tmp_path, clock)
    store.ensure(REF)
    assert clock.slept == 0.0


def _utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def _clock_at(text: str) -> SleepingClock:
    clock = SleepingClock(0.0)
    clock.now = _utc(text) - 1_700_000_000.0  # FakeClock.time() = 1.7e9 + now
    return clock


def test_a_closed_download_window_defers_the_download_and_says_when_it_opens(tmp_path):
    clock = _clock_at("2026-03-10 12:00")
    store, gate = _store(tmp_path, clock)
    gate.set_policy(DownloadPolicy(window=Window(cron="0 1 * * *", grace_s=3600)))
    with pytest.raises(DownloadDeferred) as exc:
        store.ensure(REF)
    assert exc.value.opens_at == _utc("2026-03-11 01:00")
    assert "opens 2026-03-11 01:00 UTC" in str(exc.value)
    assert not store.has(SHA) and store.partial_bytes(SHA) == 0


def test_a_download_stops_when_its_window_closes_and_resumes_in_the_next(tmp_path):
    clock = _clock_at("2026-03-10 01:59:58")
    store, gate = _store(tmp_path, clock)
    gate.set_policy(
        DownloadPolicy(rate_bps=256 * 1024, window=Window(cron="0 1 * * *", grace_s=3600))
    )
    with pytest.raises(DownloadDeferred):
        store.ensure(REF)  # two seconds of window left: about half of it arrives
    kept = store.partial_bytes(SHA)
    assert 256 * 1024 <= kept < len(DATA)
    clock.now = _utc("2026-03-11 01:00") - 1_700_000_000.0
    store.ensure(REF)
    assert store.has(SHA)
    assert store.client.calls[-1] == (REF.url, kept)  # type: ignore[attr-defined]


def test_a_changed_policy_takes_effect_and_an_equal_one_keeps_the_bucket():
    gate = DownloadGate(FakeClock())
    gate.set_policy(DownloadPolicy(rate_bps=10_000))
    bucket = gate._bucket
    gate.set_policy(DownloadPolicy(rate_bps=10_000))
    assert gate._bucket is bucket
    gate.set_policy(None)
    assert gate.rate_bps is None and gate._bucket is None

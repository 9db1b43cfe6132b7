"""hypervisor_probe: the boot sector's shape, the kvm/tcg decision and its cache (no QEMU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node_agent.runtime.hypervisor_probe import (
    CACHE_FILE,
    MARKER,
    START_MARKER,
    BootResult,
    boot_sector,
    probe_accel,
)


def out_sequence(text: bytes) -> bytes:
    return b"".join(bytes((0xB0, byte, 0xEE)) for byte in text)


def test_boot_sector_shape() -> None:
    sector = boot_sector()
    assert len(sector) == 512
    assert sector[510:] == b"\x55\xaa"
    assert sector[:1] == b"\xfa"  # cli
    assert out_sequence(START_MARKER + b"\r\n") in sector
    assert out_sequence(MARKER + b"\r\n") in sector
    assert sector.index(out_sequence(START_MARKER)) < sector.index(out_sequence(MARKER))
    assert boot_sector() == sector  # deterministic


def test_boot_sector_rejects_oversized_marker() -> None:
    with pytest.raises(ValueError):
        boot_sector(marker=b"X" * 200)


class FakeCheck:
    """Stands in for boot_check: scripted results per accelerator, records calls."""

    def __init__(self, **results: BootResult) -> None:
        self.results = results
        self.calls: list[str] = []

    def __call__(self, accel: str, *, timeout_s: float, qemu_binary: str) -> BootResult:
        self.calls.append(accel)
        return self.results[accel]


def ok(accel: str, work_s: float) -> BootResult:
    return BootResult(accel, True, work_s + 0.1, work_s, "ok")


FAILED_KVM = BootResult("kvm", False, 8.0, None, "no marker")


@pytest.fixture
def kvm_device(tmp_path: Path) -> Path:
    device = tmp_path / "kvm"
    device.write_bytes(b"")
    return device


@pytest.mark.parametrize("override", ["kvm", "tcg"])
def test_override_skips_probe(tmp_path: Path, override: str) -> None:
    check = FakeCheck()
    assert probe_accel(tmp_path, override, check=check) == override
    assert check.calls == [] and not (tmp_path / CACHE_FILE).exists()


def test_bad_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="xen"):
        probe_accel(tmp_path, "xen")


def test_no_kvm_device_means_tcg_without_booting(tmp_path: Path) -> None:
    check = FakeCheck()
    assert probe_accel(tmp_path, kvm_device=tmp_path / "missing", check=check) == "tcg"
    assert check.calls == []
    assert json.loads((tmp_path / CACHE_FILE).read_text())["accel"] == "tcg"


def test_working_kvm_is_chosen_and_cached(tmp_path: Path, kvm_device: Path) -> None:
    check = FakeCheck(kvm=ok("kvm", 0.02), tcg=ok("tcg", 0.5))
    assert probe_accel(tmp_path, kvm_device=kvm_device, check=check) == "kvm"
    assert check.calls == ["kvm", "tcg"]
    assert probe_accel(tmp_path, kvm_device=kvm_device, check=check) == "kvm"
    assert check.calls == ["kvm", "tcg"]  # second answer came from the cache
    assert [p.name for p in tmp_path.iterdir() if p.name != "kvm"] == [CACHE_FILE]


def test_hanging_kvm_means_tcg(tmp_path: Path, kvm_device: Path) -> None:
    check = FakeCheck(kvm=FAILED_KVM)
    assert probe_accel(tmp_path, kvm_device=kvm_device, check=check) == "tcg"
    assert check.calls == ["kvm"]
    record = json.loads((tmp_path / CACHE_FILE).read_text())
    assert record["accel"] == "tcg" and "no marker" in record["detail"]


def test_kvm_slower_than_tcg_means_tcg(tmp_path: Path, kvm_device: Path) -> None:
    check = FakeCheck(kvm=ok("kvm", 6.0), tcg=ok("tcg", 0.5))
    assert probe_accel(tmp_path, kvm_device=kvm_device, check=check) == "tcg"


def test_stale_cache_is_reprobed(tmp_path: Path, kvm_device: Path) -> None:
    check = FakeCheck(kvm=FAILED_KVM)
    probe_accel(tmp_path, kvm_device=kvm_device, check=check)
    cache = tmp_path / CACHE_FILE
    record = json.loads(cache.read_text())
    record["fingerprint"]["kernel"] = "another-kernel"
    cache.write_text(json.dumps(record))
    check.results["kvm"], check.results["tcg"] = ok("kvm", 0.01), ok("tcg", 0.4)
    assert probe_accel(tmp_path, kvm_device=kvm_device, check=check) == "kvm"
    assert check.calls == ["kvm", "kvm", "tcg"]


def test_corrupt_cache_is_reprobed(tmp_path: Path, kvm_device: Path) -> None:
    (tmp_path / CACHE_FILE).write_text("{not json")
    check = FakeCheck(kvm=FAILED_KVM)
    assert probe_accel(tmp_path, kvm_device=kvm_device, check=check) == "tcg"
    assert check.calls == ["kvm"]


def test_without_state_dir_nothing_is_cached(tmp_path: Path, kvm_device: Path) -> None:
    check = FakeCheck(kvm=FAILED_KVM)
    assert probe_accel(None, kvm_device=kvm_device, check=check) == "tcg"
    assert probe_accel(None, kvm_device=kvm_device, check=check) == "tcg"
    assert check.calls == ["kvm", "kvm"]

"""``outpost-agent``: run the node agent (``run``), one pass of it (``once``), or print
the node's identity (``identity``: the device cert and EK cert sha256 fingerprints an
operator pins in a claim; the node image prints it on its console at every boot)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from attestation.tpm import Tpm, TpmError, parse_tpm_setting
from node_agent.agent import Agent
from node_agent.client import ControllerError, Unreachable
from node_agent.identity import IdentityError, OnboardingRefused, fingerprints
from node_agent.runtime.base import Runtime
from node_agent.settings import AgentSettings, SettingsError, load_settings

__all__ = ["build_runtimes", "main"]

log = logging.getLogger("outpost.agent")


def build_runtimes(settings: AgentSettings, node_uuid: str) -> tuple[Mapping[str, Runtime], str]:
    """The real runtimes: libvirt for VMs (KVM if it really works, else TCG), podman."""
    from node_agent.runtime.container import PodmanRuntime
    from node_agent.runtime.hypervisor_probe import probe_accel
    from node_agent.runtime.vm import LibvirtRuntime

    accel = probe_accel(settings.state_dir, override=settings.hypervisor)
    runtimes: dict[str, Runtime] = {
        "vm": LibvirtRuntime(uri=settings.libvirt_uri, node_uuid=node_uuid, accel=accel),
        "container": PodmanRuntime(
            node_uuid, podman=settings.podman, global_args=settings.podman_global_args
        ),
    }
    return runtimes, accel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="outpost-agent", description=__doc__)
    parser.add_argument("--config", type=Path, help="agent settings file (YAML/JSON)")
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--bundle", type=Path, dest="bundle_dir", help="onboarding bundle dir")
    parser.add_argument("--serial")
    parser.add_argument("--libvirt-uri")
    parser.add_argument("--hypervisor", choices=("auto", "kvm", "tcg"))
    parser.add_argument("--config-interval", type=float, dest="config_interval_s")
    parser.add_argument("--tpm", help="none | auto | device:/dev/tpmrm0 | swtpm:host=H,port=P")
    parser.add_argument("--log-level", default=os.environ.get("OUTPOST_LOG_LEVEL", "INFO"))
    parser.add_argument("command", choices=("run", "once", "identity"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    overrides = {
        k: getattr(args, k)
        for k in (
            "state_dir",
            "bundle_dir",
            "serial",
            "libvirt_uri",
            "hypervisor",
            "config_interval_s",
            "tpm",
        )
    }
    try:
        settings = load_settings(args.config, overrides)
        if args.command == "identity":
            return _print_identity(settings)
        agent = Agent(settings, build_runtimes)
    except (SettingsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "once":
        try:
            agent.start()
        except (OnboardingRefused, Unreachable, ControllerError) as exc:
            print(f"error: cannot onboard: {exc}", file=sys.stderr)
            return 1
        except (TpmError, IdentityError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            for status in agent.once():
                print(f"{status.name:24} {status.state.value:12} {status.error}")
        finally:
            agent.close()
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        agent.run(stop)
    except (TpmError, IdentityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_identity(settings: AgentSettings) -> int:
    """``outpost-agent identity``: the fingerprints an operator pastes into a claim."""
    tpm: Tpm | None = None
    try:
        setting = parse_tpm_setting(settings.tpm)
        if setting.kind != "none":
            tpm = Tpm(setting)
            tpm.ensure_keys()
        found = fingerprints(settings.state_dir, settings.serial, tpm)
    except (TpmError, IdentityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if tpm is not None:
            tpm.close()
    ek = found.ek_cert_sha256 or (
        "none (the TPM has no EK certificate)" if tpm else "none (no TPM)"
    )
    print(f"outpost-agent identity: serial {settings.serial}")
    print(f"device-cert-sha256: {found.device_cert_sha256}")
    print(f"ek-cert-sha256: {ek}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

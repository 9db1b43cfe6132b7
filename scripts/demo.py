"""`make demo`: a controller on SQLite, a local node agent with a software TPM (swtpm),
a demo container app and a demo VM.

Everything lives in .demo/ (reused on the next run; --fresh starts over).  The
controller, swtpm and the agent run as child processes; the agent's device key lives
in the swtpm and it must attest (TPM quote + event log) before it gets its config.
The swtpm is made like a TPM from a factory: EK certificates from a local test CA
(.demo/ek-ca, its bundle .demo/ek-ca/ek-ca-bundle.pem is the controller's EK CA bundle;
a .demo made before EK certificates existed needs --fresh).
Ctrl-C unassigns the apps (the agent removes the container and the VM) and stops
everything.  --exit-when-running does the same as soon as both apps are RUNNING and
the node is attested (for scripted checks).
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
from pathlib import Path

import requests

from lab.swtpm_ek import EkCaError, LocalEkCa

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
BIN = Path(sys.executable).parent
SERIAL = "demo-node-1"
APPS = {
    "demo-container": {
        "kind": "container",
        "image": "busybox",
        "command": ["sh", "-c", "while true; do echo hello from outpost; sleep 5; done"],
        "resources": {"vcpus": 1, "memory_mib": 64},
    },
    "demo-vm": {"kind": "vm", "image": "testvm", "resources": {"vcpus": 1, "memory_mib": 96}},
}


def say(msg: str) -> None:
    print(f"[demo {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def run(*cmd: str | Path, check: bool = True) -> str:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(map(str, cmd))}\n{out.stderr}{out.stdout}")
    return out.stdout


class Api:
    def __init__(self, url: str, token: str, ca: Path) -> None:
        self.url, self.ca = url, str(ca)
        self.headers = {"Authorization": f"Bearer {token}"}

    def __call__(self, method: str, path: str, **kw: object) -> requests.Response:
        return requests.request(
            method,
            f"{self.url}/api/v1{path}",
            headers=self.headers,
            verify=self.ca,
            timeout=120,
            **kw,
        )  # type: ignore[arg-type]


def start_controller(port: int) -> subprocess.Popen[bytes]:
    data = DEMO / "controller"
    url = f"https://127.0.0.1:{port}"
    if not (data / "controller.json").exists():
        run(
            BIN / "outpost-controller",
            "--data-dir",
            data,
            "init",
            "--public-url",
            url,
            "--token-file",
            DEMO / "admin-token",
            "--admin-password-file",
            DEMO / "ui-admin-password",
            "--node-config-interval",
            "2",
        )
        say("controller initialised (PKI, SQLite database, admin token, web UI admin)")
    log = (DEMO / "controller.log").open("ab")
    proc = subprocess.Popen(
        [BIN / "outpost-controller", "--data-dir", data, "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    for _ in range(100):
        try:
            requests.get(f"{url}/healthz", verify=str(data / "pki" / "root-ca.pem"), timeout=1)
            return proc
        except requests.RequestException:
            if proc.poll() is not None:
                raise SystemExit(f"controller exited; see {DEMO / 'controller.log'}") from None
            time.sleep(0.2)
    raise SystemExit("controller did not start")


def provision(api: Api) -> None:
    if api("POST", "/nodes/claim", json={"serial": SERIAL}).status_code != 201:
        raise SystemExit("claim failed")
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
    say(f"claimed {SERIAL}; assigned {', '.join(APPS)}")


def start_agent(tpm_port: int) -> subprocess.Popen[bytes]:
    bundle = DEMO / "bundle"
    if not (bundle / "controller.json").exists():
        run(
            BIN / "outpost-controller",
            "--data-dir",
            DEMO / "controller",
            "bundle",
            "--out",
            bundle,
            "--batch",
            "demo",
        )
    log = (DEMO / "agent.log").open("ab")
    return subprocess.Popen(
        [
            BIN / "outpost-agent",
            "--state-dir",
            DEMO / "node",
            "--bundle",
            bundle,
            "--serial",
            SERIAL,
            "--config-interval",
            "2",
            "--tpm",
            f"swtpm:host=127.0.0.1,port={tpm_port}",
            "run",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def start_swtpm() -> tuple[subprocess.Popen[bytes], int]:
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
        proc = subprocess.Popen(
            [
                "swtpm", "socket", "--tpm2",
                "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                "--tpmstate", f"dir={state}",
                "--flags", "not-need-init,startup-clear",
            ],
            stdout=(DEMO / "swtpm.log").open("ab"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port + 1), timeout=0.5).close()
                return proc, port
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise SystemExit(f"swtpm did not start; see {DEMO / 'swtpm.log'}")


def trust_state(api: Api) -> dict[str, str]:
    r = api("GET", f"/trust/nodes/{SERIAL}")
    return r.json() if r.status_code == 200 else {}


def app_states(api: Api) -> dict[str, str]:
    node = api("GET", f"/nodes/{SERIAL}").json()
    return {a["name"]: a["state"] for a in (node.get("info") or {}).get("apps", [])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--fresh", action="store_true", help="start over (removes .demo/)")
    parser.add_argument("--exit-when-running", action="store_true")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if args.fresh and DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir(exist_ok=True)
    DEMO.chmod(0o755)
    cli_conf = DEMO / "cli.json"
    url = f"https://127.0.0.1:{args.port}"
    cli_conf.write_text(
        json.dumps(
            {
                "url": url,
                "token_file": str(DEMO / "admin-token"),
                "ca": str(DEMO / "controller/pki/root-ca.pem"),
            },
            indent=2,
        )
    )
    controller = start_controller(args.port)
    say(f"controller up at {url}")
    api = Api(url, (DEMO / "admin-token").read_text().strip(), DEMO / "controller/pki/root-ca.pem")
    agent: subprocess.Popen[bytes] | None = None
    tpm: subprocess.Popen[bytes] | None = None
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        provision(api)
        attested_before = trust_state(api).get("attested_at")  # from an earlier run
        tpm, tpm_port = start_swtpm()
        say(f"software TPM (swtpm) up on 127.0.0.1:{tpm_port}; state in {DEMO / 'swtpm'}")
        agent = start_agent(tpm_port)
        say("node agent started (TPM keys, onboards, attests, fetches its config, reconciles)")
        deadline, last, last_trust, accepted = time.monotonic() + args.timeout, {}, "", False
        while not stop:
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
                break
            if agent.poll() is not None:
                raise SystemExit(f"agent exited; see {DEMO / 'agent.log'}")
            if time.monotonic() > deadline:
                raise SystemExit(f"apps not RUNNING after {args.timeout:.0f} s: {states}")
            time.sleep(0.5)
        if not stop:
            took = time.monotonic() - T0
            say(f"both apps RUNNING, {took:.1f} s after the demo started (set-up excluded)")
            outpost = [BIN / "outpost", "--config", cli_conf]
            print("\n$ outpost node demo-node-1\n" + run(*outpost, "node", SERIAL))
            print("$ outpost trust\n" + run(*outpost, "trust"))
            print("$ virsh -c qemu:///system list\n" + run("virsh", "-c", "qemu:///system", "list"))
            print("$ podman ps\n" + run("podman", "ps", "--filter", "label=outpost.app"))
            print(f"Controller: {url}  (root CA: {DEMO / 'controller/pki/root-ca.pem'})")
            print("Log in with the operator CLI (admin token in .demo/admin-token, mode 0600):")
            print(f"  export OUTPOST_CONFIG={cli_conf}")
            print("  .venv/bin/outpost nodes        # or: node demo-node-1, trust, apps, audit")
            print(f"Web UI: {url}/ui/  (the browser warns: the controller's root CA is private)")
            if (DEMO / "ui-admin-password").exists():
                print("  log in as admin; password in .demo/ui-admin-password (mode 0600)")
            else:  # a data dir from before the web UI
                print(
                    "  add a login: .venv/bin/outpost-controller --data-dir .demo/controller"
                    " adduser --username me --role admin"
                )
            print(f"Logs: {DEMO / 'controller.log'}, {DEMO / 'agent.log'}")
        if not args.exit_when_running:
            print("Ctrl-C stops the demo (the agent first removes the VM and the container).")
            while not stop:
                time.sleep(0.5)
        return 0
    finally:
        if agent is not None and agent.poll() is None:
            say("removing the demo apps from the node")
            for name in APPS:
                api("DELETE", f"/nodes/{SERIAL}/apps/{name}")
            for _ in range(60):
                if not app_states(api):
                    break
                time.sleep(0.5)
            agent.terminate()
            agent.wait(30)
        if tpm is not None:
            tpm.terminate()
            tpm.wait(30)
        controller.terminate()
        controller.wait(30)
        say("stopped")


T0 = time.monotonic()
if __name__ == "__main__":
    raise SystemExit(main())

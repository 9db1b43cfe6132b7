"""`make demo`: a controller on SQLite, a local node agent, a demo container app and a demo VM.

Everything lives in .demo/ (reused on the next run; --fresh starts over).  The
controller and the agent run as child processes; Ctrl-C unassigns the apps (the
agent removes the container and the VM) and stops both.  --exit-when-running
does the same as soon as both apps are RUNNING (for scripted checks).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

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
            "--node-config-interval",
            "2",
        )
        say("controller initialised (PKI, SQLite database, admin token)")
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


def start_agent() -> subprocess.Popen[bytes]:
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
            "run",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


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
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        provision(api)
        agent = start_agent()
        say("node agent started (onboards, fetches its signed config, reconciles)")
        deadline, last = time.monotonic() + args.timeout, {}
        while not stop:
            states = app_states(api)
            if states != last:
                say("apps: " + ", ".join(f"{k}={v}" for k, v in sorted(states.items())))
                last = states
            if len(states) == len(APPS) and set(states.values()) == {"RUNNING"}:
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
            print("$ virsh -c qemu:///system list\n" + run("virsh", "-c", "qemu:///system", "list"))
            print("$ podman ps\n" + run("podman", "ps", "--filter", "label=outpost.app"))
            print(f"Controller: {url}  (root CA: {DEMO / 'controller/pki/root-ca.pem'})")
            print("Log in with the operator CLI (admin token in .demo/admin-token, mode 0600):")
            print(f"  export OUTPOST_CONFIG={cli_conf}")
            print("  .venv/bin/outpost nodes        # or: node demo-node-1, apps, images, audit")
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
        controller.terminate()
        controller.wait(30)
        say("stopped")


T0 = time.monotonic()
if __name__ == "__main__":
    raise SystemExit(main())

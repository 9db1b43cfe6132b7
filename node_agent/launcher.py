"""``outpost-agent-launcher``: run the agent, switch versions, fall back by itself.

The launcher owns which agent version runs (``<state>/agent/launcher.json``, see
``node_agent.self_update.state``) and is itself never updated (EVE's boot loader).  It
runs the agent as a child process: the built-in version (the one installed with the
launcher) or ``versions/<v>`` through ``PYTHONPATH``.

    agent writes pending.json  → stop the child, start <v> on trial (deadline = window)
    trial writes commit.json   → <v> becomes current, the old one previous
    trial exits or the window passes without a commit → stop it, record the failure,
                                 run the previous version again
    launcher restarts during a trial with no commit → failure (as a reboot in EVE)

A committed version that crashes is restarted (with a growing delay), not replaced.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from node_agent.self_update.installer import installed_manifest
from node_agent.self_update.state import (
    ENV_LAUNCHER,
    ENV_TRIAL,
    MAX_FAILED,
    LauncherState,
    Outcome,
    Paths,
    StateError,
    Trial,
    read_marker,
)
from node_agent.settings import SettingsError, load_settings

__all__ = ["DEFAULT_WINDOW_S", "Launcher", "main"]

log = logging.getLogger("outpost.launcher")
DEFAULT_WINDOW_S = 600.0
STOP_GRACE_S = 30.0
MAX_RESTART_DELAY_S = 60.0


class Launcher:
    def __init__(
        self,
        paths: Paths,
        agent_args: list[str],
        window_s: float = DEFAULT_WINDOW_S,
        poll_s: float = 0.5,
        python: str = sys.executable,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.paths = paths
        self.agent_args = agent_args
        self.window_s = window_s
        self.poll_s = poll_s
        self.python = python
        self.stop_grace_s = stop_grace_s
        self.child: subprocess.Popen[bytes] | None = None
        self._restart_delay = 1.0
        paths.root.mkdir(parents=True, exist_ok=True)

    # -- state transitions (each one atomic write of launcher.json) -------------------
    def _load(self) -> LauncherState:
        try:
            return self.paths.load()
        except StateError as exc:
            log.error("%s; starting over with the built-in agent", exc)
            state = LauncherState()
            self.paths.save(state)
            return state

    def start_trial(self, state: LauncherState, version: str) -> LauncherState:
        now = time.time()
        new = state.model_copy(
            update={
                "trial": Trial(
                    version=version,
                    previous=state.current,
                    started_at=now,
                    deadline=now + self.window_s,
                )
            }
        )
        self.paths.save(new)
        self.paths.pending.unlink(missing_ok=True)
        self.paths.commit.unlink(missing_ok=True)
        log.info("agent %s on trial for %.0f s", version, self.window_s)
        return new

    def commit(self, state: LauncherState) -> LauncherState:
        assert state.trial is not None
        trial = state.trial
        new = LauncherState(
            current=trial.version,
            previous=trial.previous,
            last=Outcome(version=trial.version, result="committed", at=time.time()),
            failed=state.failed,
        )
        self.paths.save(new)
        self.paths.commit.unlink(missing_ok=True)
        self._prune(keep={new.current, new.previous})
        log.info("agent %s committed (previous %s)", trial.version, trial.previous or "built-in")
        return new

    def fail(self, state: LauncherState, reason: str) -> LauncherState:
        assert state.trial is not None
        version = state.trial.version
        kept = [v for v in state.failed if v != version][-(MAX_FAILED - 1) :]
        failed = [*kept, version]
        new = state.model_copy(
            update={
                "trial": None,
                "last": Outcome(version=version, result="failed", reason=reason, at=time.time()),
                "failed": failed,
            }
        )
        self.paths.save(new)
        self.paths.commit.unlink(missing_ok=True)
        self._prune(keep={new.current, new.previous})
        log.error(
            "agent %s failed its trial (%s); back to %s", version, reason, new.current or "built-in"
        )
        return new

    def recover(self) -> LauncherState:
        """At start: finish a trial a previous launcher left behind."""
        state = self._load()
        if state.trial is not None:
            marker = read_marker(self.paths.commit)
            if marker is not None and marker.version == state.trial.version:
                return self.commit(state)
            return self.fail(state, "the launcher restarted during the trial")
        self.paths.commit.unlink(missing_ok=True)
        return state

    def _prune(self, keep: set[str | None]) -> None:
        if not self.paths.versions.is_dir():
            return
        for entry in self.paths.versions.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)

    def _pending(self, state: LauncherState) -> str | None:
        """A valid switch request, or None (an invalid one is removed)."""
        marker = read_marker(self.paths.pending)
        if marker is None:
            return None
        version = marker.version
        problem = ""
        if version == state.current:
            problem = "it is already the current version"
        elif version in state.failed:
            problem = "it failed its trial before"
        elif installed_manifest(self.paths.version_dir(version)) is None:
            problem = "it is not installed"
        if problem:
            log.error("ignoring the request to switch to %s: %s", version, problem)
            self.paths.pending.unlink(missing_ok=True)
            return None
        return version

    # -- the child ---------------------------------------------------------------
    def spawn(self, version: str | None, trial: bool) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != ENV_TRIAL}
        env[ENV_LAUNCHER] = str(self.paths.root)
        if version is not None:  # else the built-in agent: the launcher's own code
            env["PYTHONPATH"] = str(self.paths.version_dir(version))
        if trial and version is not None:
            env[ENV_TRIAL] = version
        cmd = [self.python, "-P", "-m", "node_agent.cli", *self.agent_args]
        log.info("starting agent %s%s", version or "built-in", " (trial)" if trial else "")
        self.child = subprocess.Popen(cmd, env=env)
        return self.child

    def stop_child(self) -> int | None:
        child = self.child
        if child is None:
            return None
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(self.stop_grace_s)
            except subprocess.TimeoutExpired:
                log.error("agent did not stop in %.0f s; killing it", self.stop_grace_s)
                child.kill()
                child.wait()
        self.child = None
        return child.returncode

    # -- the loop ----------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        state = self.recover()
        while not stop.is_set():
            if state.trial is None and (version := self._pending(state)) is not None:
                state = self.start_trial(state, version)
            running = state.trial.version if state.trial else state.current
            if running is not None and installed_manifest(self.paths.version_dir(running)) is None:
                log.error("agent %s is not installed; running the built-in one", running)
                running = None
            child = self.spawn(running, trial=state.trial is not None)
            state = self._supervise(child, state, stop)
        self.stop_child()
        return 0

    def _supervise(
        self, child: subprocess.Popen[bytes], state: LauncherState, stop: threading.Event
    ) -> LauncherState:
        """Watch ``child`` until it must be replaced; returns the state to go on with."""
        started = time.monotonic()
        while not stop.wait(self.poll_s):
            code = child.poll()
            trial = state.trial
            if trial is not None:
                marker = read_marker(self.paths.commit)
                if marker is not None and marker.version == trial.version:
                    state = self.commit(state)
                    continue
                if code is not None:
                    self.child = None
                    return self.fail(state, f"exited with status {code} before committing")
                if time.time() >= trial.deadline:
                    self.stop_child()
                    return self.fail(state, f"did not commit within {self.window_s:.0f} s")
                continue
            if code is not None:
                self.child = None
                if time.monotonic() - started > 60:
                    self._restart_delay = 1.0
                log.error(
                    "agent exited with status %s; restarting in %.0f s", code, self._restart_delay
                )
                if stop.wait(self._restart_delay):
                    return state
                self._restart_delay = min(self._restart_delay * 2, MAX_RESTART_DELAY_S)
                return state
            if self._pending(state) is not None:
                log.info("switch requested; stopping the running agent")
                self.stop_child()
                return state
        return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="outpost-agent-launcher",
        description=__doc__.split("\n\n")[0],
        epilog="Other options are passed to outpost-agent (run).",
    )
    parser.add_argument("--config", type=Path, help="agent settings file (YAML/JSON)")
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument(
        "--commit-window",
        type=float,
        default=DEFAULT_WINDOW_S,
        help="seconds a new version has to re-attest and report (default 600)",
    )
    parser.add_argument("--log-level", default=os.environ.get("OUTPOST_LOG_LEVEL", "INFO"))
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not 1.0 <= args.commit_window <= 86400.0:
        print("error: --commit-window must be between 1 and 86400 s", file=sys.stderr)
        return 2
    if args.state_dir is not None:
        state_dir = args.state_dir
    else:
        try:
            state_dir = load_settings(args.config, {}).state_dir
        except SettingsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    agent_args = [*rest, "--log-level", args.log_level]
    if args.config is not None:
        agent_args += ["--config", str(args.config)]
    if args.state_dir is not None:
        agent_args += ["--state-dir", str(args.state_dir)]
    launcher = Launcher(Paths(state_dir / "agent"), [*agent_args, "run"], args.commit_window)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return launcher.run(stop)


if __name__ == "__main__":
    raise SystemExit(main())

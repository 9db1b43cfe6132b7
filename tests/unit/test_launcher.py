"""The launcher's state machine, with real child processes: small fake agents (a
``node_agent/cli.py`` per version dir) that request a switch, commit, crash or hang.

Every transition is one atomic write of ``launcher.json``; these tests read it as the
agent and an operator would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node_agent.launcher import Launcher
from node_agent.self_update.state import LauncherState, Paths, StateError, Trial

FAKE_CLI = """
import json, os, pathlib, sys, time
here = pathlib.Path(__file__).resolve().parent
root = pathlib.Path(os.environ["OUTPOST_AGENT_LAUNCHER"])
with open(root / "runs.log", "a") as log:
    log.write(f"{here.parent.name} {os.environ.get('OUTPOST_AGENT_TRIAL', '-')}\\n")
behaviour = (here / "behaviour").read_text().strip()
if behaviour.startswith("request:"):
    (root / "pending.json").write_text(json.dumps({"version": behaviour[8:]}))
elif behaviour == "commit":
    time.sleep(0.3)
    version = os.environ["OUTPOST_AGENT_TRIAL"]
    (root / "commit.json").write_text(json.dumps({"version": version, "at": time.time()}))
elif behaviour == "crash":
    sys.exit(3)
time.sleep(3600)
"""


def _fake_agent(directory: Path, behaviour: str, version: str | None = None) -> None:
    package = directory / "node_agent"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text(FAKE_CLI)
    (package / "behaviour").write_text(behaviour)
    if version is not None:
        manifest = {
            "version": version,
            "sha256": "ab" * 32,
            "size": 1,
            "code_digest": "cd" * 32,
            "created": 0.0,
        }
        (directory / "manifest.json").write_text(json.dumps({"manifest": manifest}))


class Harness:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window_s: float) -> None:
        self.paths = Paths(tmp_path / "agent")
        self.builtin = tmp_path / "builtin"
        monkeypatch.setenv("PYTHONPATH", str(self.builtin))  # the launcher's own agent
        self.launcher = Launcher(self.paths, ["run"], window_s, poll_s=0.1, stop_grace_s=5)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def builtin_does(self, behaviour: str) -> None:
        _fake_agent(self.builtin, behaviour)

    def install(self, version: str, behaviour: str) -> None:
        _fake_agent(self.paths.version_dir(version), behaviour, version)

    def start(self) -> None:
        self.thread = threading.Thread(target=self.launcher.run, args=(self.stop,))
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)
            assert not self.thread.is_alive()

    def state(self) -> LauncherState:
        return self.paths.load()

    def runs(self) -> list[str]:
        try:
            return (self.paths.root / "runs.log").read_text().splitlines()
        except FileNotFoundError:
            return []

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}; runs {self.runs()}, state {self.state()}")


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    h = Harness(tmp_path, monkeypatch, window_s=60)
    yield h
    h.finish()


def test_the_built_in_agent_runs_when_nothing_was_installed(harness: Harness):
    harness.builtin_does("idle")
    harness.start()
    harness.wait("the built-in agent", lambda: harness.runs() == ["builtin -"])
    assert harness.state() == LauncherState()


def test_a_switch_request_runs_the_new_version_on_trial_and_its_commit_makes_it_current(
    harness: Harness,
):
    harness.builtin_does("request:1.0.1")
    harness.install("1.0.1", "commit")
    harness.start()
    harness.wait("the commit", lambda: harness.state().current == "1.0.1")
    state = harness.state()
    assert (state.previous, state.trial, state.failed) == (None, None, [])
    assert state.last is not None and state.last.result == "committed"
    assert harness.runs() == ["builtin -", "1.0.1 1.0.1"]
    assert not harness.paths.pending.exists() and not harness.paths.commit.exists()


def test_a_trial_that_exits_falls_back_to_the_previous_version_and_is_not_retried(
    harness: Harness,
):
    harness.builtin_does("request:1.0.2")
    harness.install("1.0.2", "crash")
    harness.start()
    harness.wait("the fallback", lambda: harness.state().failed == ["1.0.2"])
    state = harness.state()
    assert state.current is None and state.trial is None
    assert state.last is not None and state.last.reason == "exited with status 3 before committing"
    # the built-in agent runs again and asks for 1.0.2 again: the launcher refuses
    harness.wait("the built-in agent again", lambda: harness.runs()[-1:] == ["builtin -"])
    time.sleep(0.5)
    assert harness.runs() == ["builtin -", "1.0.2 1.0.2", "builtin -"]
    assert not harness.paths.version_dir("1.0.2").exists()


def test_a_trial_that_does_not_commit_within_the_window_is_stopped_and_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    h = Harness(tmp_path, monkeypatch, window_s=1.5)
    try:
        h.builtin_does("request:1.0.3")
        h.install("1.0.3", "hang")
        h.start()
        h.wait("the fallback", lambda: h.state().failed == ["1.0.3"])
        state = h.state()
        assert state.last is not None and state.last.reason == "did not commit within 2 s"
        assert state.current is None
        h.wait("the built-in agent again", lambda: h.runs()[-1:] == ["builtin -"])
    finally:
        h.finish()


def test_a_committed_version_becomes_previous_when_the_next_one_commits(harness: Harness):
    harness.paths.save(LauncherState(current="1.0.1"))
    harness.install("1.0.1", "request:1.0.4")
    harness.install("1.0.4", "commit")
    harness.install("0.9.0", "idle")  # older than previous: pruned on commit
    harness.start()
    harness.wait("the commit", lambda: harness.state().current == "1.0.4")
    assert harness.state().previous == "1.0.1"
    harness.wait("the prune", lambda: not harness.paths.version_dir("0.9.0").exists())
    assert sorted(p.name for p in harness.paths.versions.iterdir()) == ["1.0.1", "1.0.4"]


def test_a_launcher_restarted_during_a_trial_abandons_it(harness: Harness):
    harness.builtin_does("idle")
    harness.install("1.0.5", "commit")
    now = time.time()
    harness.paths.save(
        LauncherState(trial=Trial(version="1.0.5", previous=None, started_at=now, deadline=now))
    )
    harness.start()
    harness.wait("the built-in agent", lambda: harness.runs() == ["builtin -"])
    state = harness.state()
    assert state.failed == ["1.0.5"]
    assert state.last is not None and "restarted during the trial" in state.last.reason


def test_a_launcher_restarted_after_the_commit_marker_keeps_the_new_version(harness: Harness):
    harness.install("1.0.6", "idle")
    now = time.time()
    harness.paths.save(
        LauncherState(trial=Trial(version="1.0.6", previous=None, started_at=now, deadline=now))
    )
    harness.paths.commit.write_text(json.dumps({"version": "1.0.6"}))
    harness.start()
    harness.wait("1.0.6 running", lambda: harness.runs() == ["1.0.6 -"])
    assert harness.state().current == "1.0.6"


def test_a_request_for_a_version_that_is_not_installed_is_ignored(harness: Harness):
    harness.builtin_does("request:7.7.7")
    harness.start()
    harness.wait("the built-in agent", lambda: harness.runs() == ["builtin -"])
    harness.wait("the request dropped", lambda: not harness.paths.pending.exists())
    assert harness.state() == LauncherState()


def test_a_corrupt_state_file_is_refused_and_the_launcher_starts_over(harness: Harness):
    harness.paths.state.write_text('{"current": "1.0.1", "trial": ')  # a torn write
    with pytest.raises(StateError):
        harness.paths.load()
    harness.builtin_does("idle")
    harness.start()
    harness.wait("the built-in agent", lambda: harness.runs() == ["builtin -"])
    assert harness.state() == LauncherState()


def test_state_writes_replace_the_file_whole(tmp_path: Path):
    paths = Paths(tmp_path / "agent")
    paths.save(LauncherState(current="1.0.1"))
    paths.save(LauncherState(current="1.0.2", previous="1.0.1"))
    assert paths.load() == LauncherState(current="1.0.2", previous="1.0.1")
    assert [p.name for p in paths.root.iterdir()] == ["launcher.json"]  # no temp files left

"""The ``git`` command, run as a subprocess with timeouts, on a private bare mirror.

    fetch(url, branch, cache_dir) → the branch's commit sha (the mirror is made on first use)
    verify_commit(cache_dir, sha, allowed_signers) → the signer, or GitError
    read_tree(cache_dir, sha, sub)  → {path relative to ``sub``: text} of the YAML files

Nothing is checked out: files are read with ``git ls-tree`` / ``git cat-file`` from the
exact commit, so a sync sees one consistent revision.  The listing's sizes are checked
(at most ``MAX_FILES`` manifests, ``MAX_FILE_BYTES`` each, ``MAX_TOTAL_BYTES`` in all)
before a blob is read.  Only the ``file``, ``https`` and ``ssh`` transports are allowed.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from pathlib import Path

__all__ = [
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_TOTAL_BYTES",
    "GitError",
    "fetch",
    "read_tree",
    "verify_commit",
]

log = logging.getLogger(__name__)
TIMEOUT_S = 60.0
MAX_FILES = 500
MAX_FILE_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024
_SHA = re.compile(r"^[0-9a-f]{40}$")
_ENV = {
    "GIT_TERMINAL_PROMPT": "0",  # never wait for a password
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_ASKPASS": "/bin/false",
    "LC_ALL": "C",
}
PROTOCOLS = ("file", "https", "ssh")
"""What a source may use (no ext::, git:// or http:// from a URL)."""
PROTOCOLS_ENV = "OUTPOST_GIT_PROTOCOLS"
"""Fewer of them, ``:``-separated (``file``: a controller that never fetches over the
network, as the API fuzz test runs it)."""


def allowed_protocols() -> str:
    """``GIT_ALLOW_PROTOCOL`` for git: :data:`PROTOCOLS`, or those of them the environment's
    ``OUTPOST_GIT_PROTOCOLS`` names (never another)."""
    asked = os.environ.get(PROTOCOLS_ENV)
    if asked is None:
        return ":".join(PROTOCOLS)
    return ":".join(p for p in PROTOCOLS if p in asked.split(":"))


class GitError(Exception):
    """The repository could not be fetched or read (the reason is git's own message)."""


def _git(
    *args: str, cwd: Path | None = None, timeout: float = TIMEOUT_S, stderr_too: bool = False
) -> str:
    env = {**os.environ, **_ENV, "GIT_ALLOW_PROTOCOL": allowed_protocols()}
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitError("the git command is not installed") from exc
    except ValueError as exc:  # a NUL byte or an unencodable character in an argument
        raise GitError(f"the arguments of git {args[0]} could not be passed to git: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out after {timeout:.0f} s") from exc
    if out.returncode != 0:
        raise GitError(f"git {args[0]} failed: {out.stderr.strip()[-500:]}")
    return out.stdout + (out.stderr if stderr_too else "")


def fetch(url: str, branch: str, cache_dir: Path) -> str:
    """Fetch ``branch`` of ``url`` into the bare mirror ``cache_dir``; its commit sha."""
    if not (cache_dir / "HEAD").exists():
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _git("init", "--bare", "--quiet", str(cache_dir))
    _git(
        "fetch",
        "--quiet",
        "--no-tags",
        "--force",
        "--",
        url,
        f"+refs/heads/{branch}:refs/outpost/{branch}",
        cwd=cache_dir,
    )
    sha = _git("rev-parse", "--verify", f"refs/outpost/{branch}^{{commit}}", cwd=cache_dir).strip()
    if not _SHA.match(sha):
        raise GitError(f"unexpected revision {sha!r}")
    return sha


def read_tree(cache_dir: Path, sha: str, sub: str = "") -> dict[str, str]:
    """The ``*.yaml``/``*.yml`` files under ``<sub>/sites`` at commit ``sha``."""
    root = "/".join(p for p in (sub.strip("/"), "sites") if p)
    listing = _git("ls-tree", "-r", "-z", "--long", sha, "--", f"{root}/", cwd=cache_dir)
    prefix = sub.strip("/") + "/" if sub.strip("/") else ""
    blobs: list[tuple[str, str]] = []
    total = 0
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        _mode, kind, obj, size = meta.split()
        if kind != "blob" or not path.endswith((".yaml", ".yml")):
            continue
        rel = path[len(prefix) :]
        if len(blobs) >= MAX_FILES:
            raise GitError(f"more than {MAX_FILES} manifest files under {root}/")
        if int(size) > MAX_FILE_BYTES:
            raise GitError(f"{rel}: larger than {MAX_FILE_BYTES // 1024} KiB")
        total += int(size)
        if total > MAX_TOTAL_BYTES:
            raise GitError(f"the manifests under {root}/ are larger than {MAX_TOTAL_BYTES} bytes")
        blobs.append((rel, obj))
    return {rel: _git("cat-file", "blob", obj, cwd=cache_dir) for rel, obj in blobs}


def verify_commit(cache_dir: Path, sha: str, allowed_signers: str) -> str:
    """Check commit ``sha``'s signature with git's own ``verify-commit`` against an ssh
    allowed-signers file; returns git's "Good signature" line, GitError otherwise (an
    unsigned commit, an unknown key, a bad signature)."""
    with tempfile.TemporaryDirectory(prefix="outpost-signers-") as tmp:
        signers = Path(tmp) / "allowed_signers"
        signers.write_text(allowed_signers.rstrip("\n") + "\n")
        try:
            out = _git(
                "-c",
                "gpg.format=ssh",
                "-c",
                f"gpg.ssh.allowedSignersFile={signers}",
                "verify-commit",
                sha,
                cwd=cache_dir,
                stderr_too=True,
            )
        except GitError as exc:
            raise GitError(f"commit {sha[:12]} is not signed by an allowed key: {exc}") from exc
    good = [line for line in out.splitlines() if line.startswith("Good")]
    if not good:
        raise GitError(f"commit {sha[:12]} has no good signature")
    return good[0]

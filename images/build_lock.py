"""One builder at a time per output directory (e.g. parallel pytest workers, CI jobs).

Every image command (:mod:`images.build`, :mod:`images.inference_build`,
:mod:`images.node_image`, :mod:`images.vagrant_box`) holds :func:`build_lock` on its
output directory while it builds and writes its stamp and manifest.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["build_lock"]


@contextmanager
def build_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``<out_dir>/.lock`` (creating the directory)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""The lab's exceptions: messages for the person at the terminal.

LabError          something failed; the message says what and what to do (exit 1)
 └── UsageError   the arguments are wrong; nothing was changed (exit 2)
"""

from __future__ import annotations

__all__ = ["LabError", "UsageError"]


class LabError(Exception):
    """Something the user can act on: the message says what failed and what to do."""


class UsageError(LabError):
    """Bad arguments, refused before anything was touched."""

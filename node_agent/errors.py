"""The two kinds of failure the reconciler tells apart.

A :class:`TemporaryError` (a daemon busy, a download interrupted, a namespace not ready)
is retried with a back-off; a :class:`PermanentError` (an image whose digest does not
match, a spec the runtime refuses) is reported with its reason and not retried until the
app's spec changes.  Errors of the runtimes and the image store derive from one of them;
anything else that escapes a pass is taken as temporary.
"""

from __future__ import annotations

__all__ = ["PermanentError", "TemporaryError", "is_permanent"]


class TemporaryError(Exception):
    """Retry later: the same spec may work then."""


class PermanentError(Exception):
    """Retrying the same spec will not help."""


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PermanentError)

"""Flask helpers shared by the HTTP layers (``api/`` and ``ui/``): request context and
error handlers.  Only those two layers import this package."""

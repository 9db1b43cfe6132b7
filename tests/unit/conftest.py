"""Fixtures shared by the controller's unit tests (in-process app, admin token)."""

from __future__ import annotations

import pytest


@pytest.fixture
def client(controller_app):  # type: ignore[no-untyped-def]
    """A Flask test client on a fresh controller (temporary data dir and database)."""
    return controller_app.test_client()


@pytest.fixture
def admin_headers(controller_dir) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The Authorization header of the admin token made by `outpost-controller init`."""
    return {"Authorization": f"Bearer {controller_dir.token}"}

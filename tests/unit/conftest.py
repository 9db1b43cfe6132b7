"""Fixtures shared by the controller's unit tests (in-process app, admin token)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def client(controller_app):  # type: ignore[no-untyped-def]
    """A Flask test client on a fresh controller (temporary data dir and database)."""
    return controller_app.test_client()


@pytest.fixture
def admin_headers(controller_dir) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The Authorization header of the admin token made by `outpost-controller init`."""
    return {"Authorization": f"Bearer {controller_dir.token}"}


@pytest.fixture
def api(client, admin_headers):  # type: ignore[no-untyped-def]
    """Call the operator API as the admin: ``api("POST", "/apps", json={...})``.

    A test module may override it to add what its tests share (``def api(api): ...``).
    """

    def call(method: str, path: str, **kwargs: Any) -> Any:
        return client.open(f"/api/v1{path}", method=method, headers=admin_headers, **kwargs)

    return call

"""``GET /datastore/sha256/<digest>``: the controller's image blobs over HTTPS, with ranges
(resume).  Stored by :mod:`controller.store.blobs`."""

from __future__ import annotations

import re

from flask import Blueprint, send_file
from flask.typing import ResponseReturnValue

from controller.errors import ApiError
from controller.store.blobs import blob_path
from controller.web.context import current_services

__all__ = ["datastore"]

datastore = Blueprint("datastore", __name__, url_prefix="/datastore")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@datastore.get("/sha256/<digest>")
def blob(digest: str) -> ResponseReturnValue:
    if not _HEX64.match(digest):
        raise ApiError(404, "not_found", "no such blob")
    path = blob_path(current_services().settings.datastore_dir, digest)
    if not path.is_file():
        raise ApiError(404, "not_found", "no such blob")
    return send_file(path, mimetype="application/octet-stream", conditional=True, etag=digest)

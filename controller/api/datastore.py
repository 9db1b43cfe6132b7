"""``GET /datastore/sha256/<digest>``: the controller's image blobs over HTTPS, with ranges
(resume).  Stored by :mod:`controller.store.blobs`.

Served only to (checked before the file is opened, on every request and every range):

- the node a signed URL was made for (``?node=<uuid>&sig=<hmac>``, the URL its config
  carries), while it is registered, not revoked and attested
  (:mod:`controller.trust.downloads`);
- an operator API token (``Authorization: Bearer``, role operator or above).

Anything else: 401 without credentials, 403 with the wrong ones, before any byte.
"""

from __future__ import annotations

import re

from flask import Blueprint, request, send_file
from flask.typing import ResponseReturnValue

from controller.api.auth import require_role
from controller.errors import ApiError
from controller.store.blobs import blob_path
from controller.trust.downloads import download_refusal
from controller.web.context import current_services

__all__ = ["datastore"]

datastore = Blueprint("datastore", __name__, url_prefix="/datastore")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UUID = re.compile(r"^[0-9a-f-]{36}$")


def _serve(digest: str) -> ResponseReturnValue:
    path = blob_path(current_services().settings.datastore_dir, digest)
    if not path.is_file():
        raise ApiError(404, "not_found", "no such blob")
    return send_file(path, mimetype="application/octet-stream", conditional=True, etag=digest)


@require_role("operator")
def _operator_download(digest: str) -> ResponseReturnValue:
    return _serve(digest)


@datastore.get("/sha256/<digest>")
def blob(digest: str) -> ResponseReturnValue:
    if not _HEX64.match(digest):
        raise ApiError(404, "not_found", "no such blob")
    node, sig = request.args.get("node", ""), request.args.get("sig", "")
    if not node and not sig:
        if not request.headers.get("Authorization"):
            raise ApiError(
                401, "unauthenticated", "a node's signed URL or an operator token is required"
            )
        return _operator_download(digest)
    if not _UUID.match(node) or len(sig) > 128:
        raise ApiError(403, "bad_signature", "malformed download URL")
    svc = current_services()
    with svc.db.transaction() as s:
        refused = download_refusal(s, svc.download_key, digest, node, sig)
    if refused is not None:
        raise ApiError(*refused)
    return _serve(digest)

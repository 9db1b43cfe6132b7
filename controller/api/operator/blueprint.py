"""The operator API blueprint object (routes are added by the sibling modules)."""

from flask import Blueprint

ops_api = Blueprint("ops_api", __name__, url_prefix="/api/v1")

"""The controller's own metrics for Prometheus (the official client library).

Counters and histograms are counted where things happen (requests, config polls,
attestation results); fleet-wide figures (nodes by state, rollouts by state) are read
from the database when scraped (:mod:`controller.api.metrics`).  Under several worker
processes (``outpost-controller serve``) the client library's multiprocess mode adds
up every process's counts (``PROMETHEUS_MULTIPROC_DIR``, set by the server).
"""

from __future__ import annotations

import time

from flask import Flask, g, request
from prometheus_client import Counter, Histogram
from werkzeug.wrappers import Response

__all__ = ["ATTESTATIONS", "POLLS", "REQUESTS", "install"]

REQUESTS = Histogram(
    "outpost_http_request_duration_seconds",
    "Time to answer an HTTP request, by area and status class.",
    ["area", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 130),
)
POLLS = Counter(
    "outpost_config_polls_total",
    "Config requests of nodes, by answer (unchanged, config, refused).",
    ["answer"],
)
ATTESTATIONS = Counter("outpost_attestations_total", "Quotes checked, by EVE's result.", ["result"])

_AREAS = (
    ("/api/v1/device/", "device"),
    ("/api/v1/remote/", "remote"),
    ("/api/v1/", "operator"),
    ("/ui", "ui"),
    ("/datastore/", "datastore"),
)


def _area(path: str) -> str:
    return next((name for prefix, name in _AREAS if path.startswith(prefix)), "other")


def install(app: Flask) -> None:
    """Time every request of ``app`` (a long-poll's wait is part of its time)."""

    @app.before_request
    def _start() -> None:
        g.outpost_started = time.perf_counter()

    @app.after_request
    def _done(response: Response) -> Response:
        started = g.get("outpost_started")
        if started is not None:
            REQUESTS.labels(_area(request.path), f"{response.status_code // 100}xx").observe(
                time.perf_counter() - started
            )
        return response

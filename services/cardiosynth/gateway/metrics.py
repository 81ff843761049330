"""Prometheus metrics of the gateway (its own registry, so tests can build several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "cardiosynth_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY
)
LATENCY = Histogram("cardiosynth_http_request_seconds", "HTTP request latency", ["route"], registry=REGISTRY)
JOBS_SUBMITTED = Counter("cardiosynth_jobs_submitted_total", "jobs created", ["pathology"], registry=REGISTRY)

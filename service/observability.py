"""Structured JSON logs and Prometheus metrics (a registry per app, so tests stay independent)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.identifiers import redact_person_numbers


def redact(text: str) -> str:
    """A possible fødselsnummer, in any written form, never leaves the process in a log line."""
    return redact_person_numbers(text, "[redacted-id]")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in getattr(record, "fields", {}).items():
            payload[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False, default=str)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(json_lines: bool, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger("triage")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = True  # pytest's caplog sees it too


def log_fields(**fields: object) -> dict[str, dict[str, object]]:
    """`logger.info("msg", extra=log_fields(patient_id=...))` puts fields in the JSON line."""
    return {"fields": fields}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_latency = Histogram(
            "triage_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.scorings = Counter(
            "triage_scorings_total",
            "Assessments stored",
            ["pathway", "level"],
            registry=self.registry,
        )
        self.ingested = Counter(
            "triage_ingested_resources_total",
            "FHIR resources ingested",
            ["resource_type", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "triage_errors_total",
            "Errors answered, by type",
            ["type", "status"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "triage_model_info",
            "Loaded model (value 1)",
            ["name", "version"],
            registry=self.registry,
        )
        self.outbox = Gauge(
            "triage_outbox_entries", "Outbox entries by state", ["state"], registry=self.registry
        )
        self.drift_alerts = Gauge(
            "triage_drift_alert",
            "1 when the latest report for a slice flags drift or a data-quality problem",
            ["pathway", "kind"],
            registry=self.registry,
        )

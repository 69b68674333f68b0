"""Structured JSON logs and Prometheus metrics (a registry per app, so tests stay independent)."""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

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
        if record.stack_info:
            payload["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(payload, ensure_ascii=False, default=str)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


# Loggers of the libraries that print on their own: the ASGI server ("Exception in ASGI
# application" with a traceback that may quote a database key), the event loop, SQLAlchemy,
# the HTTP client. They all propagate to the root handler below instead of keeping their own.
LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "sqlalchemy", "httpx")


class _ProcessHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Marks the one handler this module installs, so configuring again replaces it."""


def configure_logging(json_lines: bool, level: int = logging.INFO) -> None:
    """One logging configuration for the whole process: every record, ours or a library's,
    leaves through one redacting handler on the root logger."""
    handler = _ProcessHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    # Other handlers on the root (pytest's capture) stay; only our own earlier one goes.
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _ProcessHandler)]
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers[:] = []  # uvicorn's own config would print around the redaction
        library.propagate = True
    logging.getLogger("uvicorn.error").setLevel(level)
    ours = logging.getLogger("triage")
    ours.handlers[:] = []
    ours.setLevel(level)
    ours.propagate = True  # to the root handler (and pytest's caplog)
    logging.captureWarnings(True)  # warnings name values too; they go through the handler
    # Uncaught exceptions in threads and at top level are printed raw by default: log them.
    threading.excepthook = _log_thread_exception
    sys.excepthook = _log_uncaught


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("triage.threads").error(
        "uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
    )


def _log_uncaught(exc_type: Any, exc_value: Any, traceback: Any) -> None:
    logging.getLogger("triage").critical(
        "uncaught exception", exc_info=(exc_type, exc_value, traceback)
    )


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
        # The alert on a refused delivery: alert rules fire on any increase (and on the
        # dead-letter state of triage_outbox_entries staying above 0).
        self.outbox_dead_letters = Counter(
            "triage_outbox_dead_letters_total",
            "Outbox entries DIPS refused with a 4xx, set aside as dead letters",
            registry=self.registry,
        )
        self.drift_alerts = Gauge(
            "triage_drift_alert",
            "1 when the latest report for a slice flags drift or a data-quality problem",
            ["pathway", "kind"],
            registry=self.registry,
        )

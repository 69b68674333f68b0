"""A small local FHIR server standing in for DIPS: transaction Bundles of conditional updates.

It keeps its store across restarts (stop() closes the socket, start() listens on the same port
again), can refuse the first N requests (503), and can store a Bundle and then answer 500 as if
the response were lost, so the sender redelivers something that has already arrived.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Stored:
    id: str
    version: int
    resource: dict[str, Any]


@dataclass
class Arrival:
    bundle_id: str
    patient: str  # the Task's patient identifier value
    task_identifier: str
    task_status: str
    event: str


@dataclass
class FhirReceiver:
    port: int
    fail_first: int = 0  # refuse this many requests with 503
    lose_response_of: set[int] = field(default_factory=set)  # store, then answer 500
    refuse_with: dict[int, int] = field(default_factory=dict)  # request number -> 4xx status
    bearer_required: bool = False  # answer 401 to a request without a bearer token
    authorizations: list[str] = field(default_factory=list)  # Authorization header per request
    requests: int = 0
    store: dict[tuple[str, str], Stored] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)  # first delivery of each Bundle
    redeliveries: int = 0
    errors: list[str] = field(default_factory=list)  # malformed entries it refused
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, body = receiver.handle(
                    self.path,
                    self.headers.get("Content-Type", ""),
                    raw,
                    self.headers.get("Authorization", ""),
                )
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(
        self, path: str, content_type: str, raw: bytes, authorization: str = ""
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests += 1
            n = self.requests
            self.authorizations.append(authorization)
            if self.bearer_required and not authorization.startswith("Bearer "):
                return 401, outcome("login", "a bearer token is required")
            if n <= self.fail_first:
                return 503, outcome("transient", "warming up")
            if n in self.refuse_with:
                return self.refuse_with[n], outcome("invalid", "refused: poison for this test")
            if path != "/fhir" or not content_type.startswith("application/fhir+json"):
                return 400, outcome("structure", f"unexpected {path} {content_type}")
            bundle = json.loads(raw)
            if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
                return 400, outcome("structure", "a transaction Bundle is expected")
            try:
                responses = [self._conditional_update(e) for e in bundle["entry"]]
            except (AssertionError, KeyError) as exc:
                self.errors.append(repr(exc))
                return 400, outcome("invalid", repr(exc))
            bundle_id = bundle["identifier"]["value"]
            if any(a.bundle_id == bundle_id for a in self.arrivals):
                self.redeliveries += 1
            else:
                task = next(
                    e["resource"]
                    for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "Task"
                )
                self.arrivals.append(
                    Arrival(
                        bundle_id,
                        task["for"]["identifier"]["value"],
                        task["identifier"][0]["value"],
                        task["status"],
                        bundle["meta"]["tag"][0]["code"],
                    )
                )
            if n in self.lose_response_of:
                return 500, outcome("exception", "stored, but the response was lost")
            return 200, {
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": responses,
            }

    def _conditional_update(self, entry: dict[str, Any]) -> dict[str, Any]:
        request, resource = entry["request"], entry["resource"]
        assert request["method"] == "PUT", request
        rtype, _, query = request["url"].partition("?")
        assert rtype == resource["resourceType"] and query.startswith("identifier=")
        system, _, value = query.removeprefix("identifier=").partition("|")
        assert {"system": system, "value": value} in resource["identifier"]
        key = (rtype, f"{system}|{value}")
        existing = self.store.get(key)
        if existing is None:  # no match: create
            stored = Stored(f"{rtype.lower()}-{len(self.store) + 1}", 1, resource)
            self.store[key] = stored
            return {
                "response": {"status": "201 Created", "location": f"{rtype}/{stored.id}/_history/1"}
            }
        existing.version += 1  # one match: update in place, never a second resource
        existing.resource = resource
        return {
            "response": {
                "status": "200 OK",
                "location": f"{rtype}/{existing.id}/_history/{existing.version}",
            }
        }

    def of_type(self, rtype: str) -> list[Stored]:
        return [s for (t, _), s in self.store.items() if t == rtype]


def outcome(code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }

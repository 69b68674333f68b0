"""The outbox as DIPS sees it: HelseID client credentials (private_key_jwt) against a local token
endpoint, a bearer token on every delivery, and a 4xx set aside as a dead letter (alerted,
listed, resendable) while the patient's later entries go on; a 5xx is retried."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from tests.service.interop.conftest import free_port
from tests.service.interop.fhir_receiver import FhirReceiver
from tests.service.interop.test_interop_outbox import (
    enrol_with_history,
    entries,
    item_of,
    make_app,
    wait_for,
)

CLIENT_ID = "triage-outbox-test"


class TokenEndpoint:
    """A HelseID stand-in: verifies the client assertion with our public key, issues tokens."""

    def __init__(self, public_key: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/connect/token"
        self.public_key = public_key
        self.issued: list[str] = []
        self.refused: list[str] = []
        self.jtis: set[str] = set()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                status, body = endpoint.token({k: v[0] for k, v in parse_qs(raw).items()})
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            assert form["grant_type"] == "client_credentials"
            assert form["client_assertion_type"] == (
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            )
            claims = jwt.decode(
                form["client_assertion"], self.public_key, algorithms=["RS256"], audience=self.url
            )
            assert claims["iss"] == claims["sub"] == form["client_id"] == CLIENT_ID
            assert claims["jti"] not in self.jtis  # an assertion is never reused
            assert claims["exp"] - claims["iat"] <= 120
            self.jtis.add(claims["jti"])
        except (AssertionError, KeyError, jwt.PyJWTError) as exc:
            self.refused.append(repr(exc))
            return 400, {"error": "invalid_client"}
        token = f"token-{len(self.issued) + 1}"
        self.issued.append(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 300}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_helseid_token_is_sent_and_a_4xx_becomes_a_dead_letter_that_blocks_nothing(
    make_settings: Any, database_url: str, auth: Any, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "helseid-client.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tokens = TokenEndpoint(key.public_key())
    # DIPS refuses the first delivery with 400 (poison) and wants a bearer token throughout.
    receiver = FhirReceiver(free_port(), refuse_with={1: 400}, bearer_required=True)
    receiver.start()
    try:
        app = make_app(
            make_settings,
            database_url,
            outbox_endpoint=receiver.base_url,
            outbox_poll_s=0.05,
            outbox_token_url=tokens.url,
            outbox_client_id=CLIENT_ID,
            outbox_client_key=str(key_path),
            outbox_client_key_id="test-key-1",
            outbox_scope="dips:fhir/write",
        )
        with TestClient(app) as client:
            pid = enrol_with_history(client, auth, 0, last_spo2=85)
            wait_for(lambda: any(e.state == "dead-letter" for e in entries(client)))
            # The patient's later entry (the clinician resolves) goes on past the dead letter.
            resolved = client.post(
                f"/api/v1/worklist/{item_of(client, pid).id}/resolve",
                json={"note": "ringt opp, stabil"},
                headers=auth("clinician"),
            )
            assert resolved.status_code == 200, resolved.text
            wait_for(lambda: len(entries(client)) >= 2)
            wait_for(lambda: all(e.state != "pending" for e in entries(client)))
            first, *later = entries(client)
            assert first.state == "dead-letter" and "HTTP 400" in (first.last_error or "")
            assert first.attempts == 1  # a 4xx is not retried
            assert later and all(e.state == "delivered" for e in later)
            listed = client.get("/api/v1/outbox?state=dead-letter", headers=auth("admin")).json()
            assert [e["id"] for e in listed["entries"]] == [first.id]
            assert listed["counts"]["dead-letter"] == 1
            metrics = client.get("/metrics").text
            assert "triage_outbox_dead_letters_total 1.0" in metrics
            # Resend once the cause is fixed: it is delivered.
            denied = client.post(f"/api/v1/outbox/{first.id}/resend", headers=auth("clinician"))
            assert denied.status_code == 403
            resent = client.post(f"/api/v1/outbox/{first.id}/resend", headers=auth("admin"))
            assert resent.status_code == 200, resent.text
            assert resent.json()["state"] == "pending"
            wait_for(lambda: entries(client)[0].state == "delivered")
            again = client.post(f"/api/v1/outbox/{first.id}/resend", headers=auth("admin"))
            assert again.status_code == 409
    finally:
        receiver.stop()
        tokens.stop()
    assert tokens.refused == []
    assert tokens.issued == ["token-1"]  # one token, cached across deliveries
    assert receiver.authorizations and set(receiver.authorizations) == {"Bearer token-1"}


def test_5xx_is_retried_with_backoff_not_set_aside(
    make_settings: Any, database_url: str, auth: Any
) -> None:
    receiver = FhirReceiver(free_port(), fail_first=2)
    receiver.start()
    try:
        app = make_app(
            make_settings, database_url, outbox_endpoint=receiver.base_url, outbox_poll_s=0.05
        )
        with TestClient(app) as client:
            enrol_with_history(client, auth, 1, last_spo2=85)
            wait_for(lambda: bool(entries(client)) and entries(client)[0].state == "delivered")
            [entry] = entries(client)
    finally:
        receiver.stop()
    assert entry.attempts == 3 and receiver.requests == 3
    assert receiver.authorizations == ["", "", ""]  # no token endpoint configured: no header

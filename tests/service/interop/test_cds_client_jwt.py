"""CDS Hooks 2.0 beside HelseID: a CDS client's own JWT (ES384/RS384, aud = the service
endpoint, jti once) is accepted, and fhirAuthorization fetches the patient prefetch lacks from a
small local FHIR server (only one configured as trusted)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from service.api.cds_hooks import SERVICE_ID
from tests.helpers import ORG
from tests.service.interop.conftest import FNRS, free_port
from tests.service.interop.test_interop_cds_hooks import hook_request
from tests.service.interop.test_interop_outbox import enrol_with_history, make_app

ISSUER = "https://dips.example.no/cds-client"
AUD = f"http://testserver/cds-services/{SERVICE_ID}"


class SmallServer:
    """JWKS of the CDS client and a FHIR server with one Patient that wants a bearer token."""

    def __init__(self, jwks: dict[str, Any], fhir_token: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.authorizations: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body = 404, {"resourceType": "OperationOutcome", "issue": []}
                if self.path == "/jwks":
                    status, body = 200, jwks
                elif self.path == "/fhir/Patient/dips-4711":
                    auth = self.headers.get("Authorization", "")
                    server.authorizations.append(auth)
                    if auth == f"Bearer {fhir_token}":
                        status, body = (
                            200,
                            {
                                "resourceType": "Patient",
                                "id": "dips-4711",
                                "identifier": [
                                    {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNRS[0]}
                                ],
                            },
                        )
                    else:
                        status = 401
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def client_jwt(key: Any, alg: str = "ES384", kid: str = "cds-1", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "dips-cds", "aud": AUD, "iat": now, "exp": now + 60}
    body["jti"] = str(uuid.uuid4())
    body.update(claims)
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


def test_cds_client_jwt_and_fhir_authorization(make_settings: Any, database_url: str, auth: Any):
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "cds-1", "use": "sig", "alg": "ES384"})
    server = SmallServer({"keys": [jwk]}, fhir_token="fhir-access-1")
    try:
        app = make_app(
            make_settings,
            database_url,
            cds_client_jwks={ISSUER: f"{server.base}/jwks"},
            cds_client_organisations={ISSUER: ORG},
            cds_fhir_servers=[f"{server.base}/fhir"],
        )
        with TestClient(app) as client:
            enrol_with_history(client, auth, 0, last_spo2=85)
            body = hook_request(
                "dips-4711",  # DIPS's own id, no prefetch: fetched with fhirAuthorization
                fhirServer=f"{server.base}/fhir",
                fhirAuthorization={
                    "access_token": "fhir-access-1",
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "scope": "user/Patient.read",
                    "subject": "triage-cds",
                },
            )
            url = f"/cds-services/{SERVICE_ID}"
            token = client_jwt(key)
            response = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
            assert len(response.json()["cards"]) == 1
            assert server.authorizations == ["Bearer fhir-access-1"]
            # The same JWT again: a replay.
            replay = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
            assert replay.status_code == 401 and "jti" in replay.text
            # aud of another endpoint, a lifetime over five minutes, an algorithm the
            # specification does not name, a key the client did not publish: all 401.
            rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            for bad in (
                client_jwt(key, aud="https://elsewhere.example/cds-services/x"),
                client_jwt(key, exp=int(time.time()) + 3600),
                client_jwt(key, kid="unknown-kid"),
                client_jwt(rsa_key, alg="RS256"),
            ):
                refused = client.post(url, json=body, headers={"Authorization": f"Bearer {bad}"})
                assert refused.status_code == 401, refused.text
            # A fhirServer that is not configured as trusted is never called: 412.
            body["fhirServer"] = "http://127.0.0.1:9/fhir"
            untrusted = client.post(
                url, json=body, headers={"Authorization": f"Bearer {client_jwt(key)}"}
            )
            assert untrusted.status_code == 412
            # Feedback takes the same client JWT (aud = the service endpoint).
            feedback = client.post(
                f"{url}/feedback",
                json={
                    "feedback": [
                        {
                            "card": response.json()["cards"][0]["uuid"],
                            "outcome": "accepted",
                            "outcomeTimestamp": "2026-03-01T10:00:00Z",
                        }
                    ]
                },
                headers={"Authorization": f"Bearer {client_jwt(key)}"},
            )
            assert feedback.status_code == 200, feedback.text
            # HelseID tokens still work beside it.
            assert client.post(url, json=body, headers=auth("integration")).status_code == 412
    finally:
        server.stop()
    assert len(server.authorizations) == 1

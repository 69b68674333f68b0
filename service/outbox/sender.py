"""The background sender: delivers pending outbox entries to DIPS's FHIR endpoint.

Each round leases the earliest pending entry of up to `batch` patients, POSTs each transaction
Bundle to the FHIR base URL (patients in parallel, one at a time per patient), and records the
outcome: 2xx -> `delivered`; a 5xx, a timeout or a network error -> retried after an exponential
backoff (first retry after one poll interval, doubling, capped at `backoff_max_s`, with ±20 %
jitter so replicas do not retry in step), holding back that patient's later entries (order before
liveness: DIPS must never see an older Task state after a newer one). A 4xx means DIPS will never
take this entry as it is (poison): it is set aside as a dead letter, an error is logged and
triage_outbox_dead_letters_total counts it (the alert), and the patient's later entries go on.
Dead letters are listed at GET /api/v1/outbox and resent with POST /api/v1/outbox/{id}/resend.
408, 425 and 429 are the 4xx that mean "later" and are retried; a 401 drops the cached HelseID
token and is retried with a new one. Entries are never deleted.
With a HelseID token endpoint configured (client credentials, private_key_jwt) every request
carries `Authorization: Bearer <token>`. With no endpoint the job only keeps /metrics current.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from service.db.engine import transaction
from service.observability import Metrics, log_fields
from service.outbox import store
from service.outbox.helseid import HelseIdClient, TokenError

log = logging.getLogger("triage.outbox")

FHIR_JSON = "application/fhir+json"
# 4xx answers that mean "not now" rather than "never": retried like a 5xx.
RETRYABLE_4XX = frozenset({401, 408, 425, 429})
RETRY, DEAD = "retry", "dead"


class OutboxSender:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        endpoint: str | None,
        metrics: Metrics,
        poll_s: float = 2.0,
        batch: int = 20,
        timeout_s: float = 10.0,
        backoff_max_s: float = 300.0,
        client: httpx.AsyncClient | None = None,
        helseid: HelseIdClient | None = None,
    ) -> None:
        self.sessions = sessions
        self.endpoint = endpoint
        self.metrics = metrics
        self.poll_s = poll_s
        self.batch = batch
        self.timeout_s = timeout_s
        # The lease outlives the HTTP timeout, so a slow send is never claimed twice.
        self.lease_s = 3 * timeout_s
        self.backoff_max_s = backoff_max_s
        self._client = client
        self.helseid = helseid

    def backoff_s(self, attempts: int) -> float:
        base = min(self.poll_s * 2 ** max(attempts - 1, 0), self.backoff_max_s)
        return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret

    def refresh_gauge(self) -> dict[str, int]:
        with transaction(self.sessions) as session:
            counts = store.counts_by_state(session)
        for state, n in counts.items():
            self.metrics.outbox.labels(state=state).set(n)
        return counts

    async def _post(self, claim: store.Claim) -> tuple[str, str] | None:
        """None on success, else (RETRY or DEAD, the reason)."""
        assert self._client is not None and self.endpoint is not None
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        if self.helseid is not None:
            try:
                token = await self.helseid.access_token(self._client)
            except TokenError as exc:
                return RETRY, f"HelseID: {exc}"
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = await self._client.post(self.endpoint, json=claim.payload, headers=headers)
        except httpx.HTTPError as exc:
            return RETRY, f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        reason = f"HTTP {response.status_code}: {response.text[:300]}"
        if response.status_code == 401 and self.helseid is not None:
            self.helseid.forget()
        if 400 <= response.status_code < 500 and response.status_code not in RETRYABLE_4XX:
            return DEAD, reason
        return RETRY, reason

    def _record(self, outcomes: list[tuple[store.Claim, tuple[str, str] | None]]) -> None:
        now = datetime.now(UTC)
        dead: list[tuple[store.Claim, str]] = []
        with transaction(self.sessions) as session:
            for claim, failure in outcomes:
                if failure is None:
                    store.record_delivered(session, claim, now)
                elif failure[0] == DEAD:
                    if store.record_dead_letter(session, claim, failure[1]):
                        dead.append((claim, failure[1]))
                else:
                    retry_at = now + timedelta(seconds=self.backoff_s(claim.attempts))
                    store.record_failed(session, claim, failure[1], retry_at)
        for claim, failure in outcomes:
            if failure is not None and failure[0] == RETRY:  # no payload: it names the patient
                log.warning(
                    "outbox delivery failed, will retry",
                    extra=log_fields(
                        entry=claim.id, attempts=claim.attempts, error=failure[1][:200]
                    ),
                )
        for claim, reason in dead:
            self.metrics.outbox_dead_letters.inc()
            log.error(
                "outbox entry refused by DIPS: set aside as a dead letter",
                extra=log_fields(entry=claim.id, attempts=claim.attempts, error=reason[:200]),
            )

    async def run_once(self) -> int:
        """One round; returns how many entries it tried to deliver."""
        if self.endpoint is None:
            return 0
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        claims = await asyncio.to_thread(store.claim_due, self.sessions, self.batch, self.lease_s)
        if not claims:
            return 0
        failures = await asyncio.gather(*(self._post(c) for c in claims))
        await asyncio.to_thread(self._record, list(zip(claims, failures, strict=True)))
        return len(claims)

    async def run(self) -> None:
        while True:
            try:
                sent = await self.run_once()
                await asyncio.to_thread(self.refresh_gauge)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end the job: log, wait, go on
                log.exception("outbox round failed")
                sent = 0
            if not sent:  # busy: go straight on; idle: wait for new entries
                await asyncio.sleep(self.poll_s)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


@asynccontextmanager
async def outbox_sender_job(app: Any) -> AsyncIterator[OutboxSender]:
    """Background job for create_app: runs the sender for the app's lifetime."""
    settings = app.state.settings
    sender = OutboxSender(
        app.state.sessions,
        settings.outbox_endpoint,
        app.state.metrics,
        poll_s=settings.outbox_poll_s,
        helseid=HelseIdClient.from_settings(settings),
    )
    app.state.outbox_sender = sender
    task = asyncio.create_task(sender.run(), name="outbox-sender")
    try:
        yield sender
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await sender.aclose()

"""Errors on web pages: a sign-in redirect for 401 and a readable page for other JSON errors.

The app's one error-handler map (service.api.errors) answers JSON; for /web paths this turns that
answer into HTML after the fact, so the error statuses and the handler map stay one.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.types import Message, Scope, Send


class ErrorPageResponder:
    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope = scope
        self._send = send
        self._start: Message | None = None
        self._body: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            accept = dict(self.scope.get("headers", [])).get(b"accept", b"")
            # Browsers (Accept: text/html) get a page; programs keep the JSON error.
            if (
                status >= 400
                and content_type.startswith(b"application/json")
                and b"text/html" in accept
            ):
                self._start = message
                return
        elif self._start is not None and message["type"] == "http.response.body":
            self._body.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._replace()
            return
        await self._send(message)

    async def _replace(self) -> None:
        assert self._start is not None
        status = self._start["status"]
        cookies = [(k, v) for k, v in self._start.get("headers", []) if k == b"set-cookie"]
        if status == 401:  # a browser: send it to sign in
            target = self.scope.get("path", "/web")
            query = self.scope.get("query_string", b"").decode("latin-1")
            nxt = target + (f"?{query}" if query else "")
            location = f"/web/sign-in?next={quote(nxt, safe='')}"
            await self._send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [
                        (b"location", location.encode("latin-1")),
                        (b"content-length", b"0"),
                        *cookies,
                    ],
                }
            )
            await self._send({"type": "http.response.body", "body": b""})
            return
        try:
            detail: Any = json.loads(b"".join(self._body) or b"{}").get("detail", "")
        except (ValueError, AttributeError):
            detail = ""
        from service.web.render import render

        request = Request(self.scope)
        response = render(
            request, "error.html", {"status": status, "detail": str(detail)}, status_code=status
        )
        raw = [(k, v) for k, v in response.raw_headers if k != b"set-cookie"] + cookies
        await self._send({"type": "http.response.start", "status": status, "headers": raw})
        await self._send({"type": "http.response.body", "body": response.body})

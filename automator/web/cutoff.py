"""At shutdown, a request whose body has not all arrived is answered 503 and closed.

uvicorn lets the requests it is serving finish, up to its graceful-shutdown timeout (the
daemon's 20 s grace), and then cancels them with a traceback. A request being handled needs
that time; one whose client sent its headers and then stopped sending (a stalled upload, a
slow or hostile client) would only hold the daemon's exit for the whole grace. This wrapper
tells such a request's app that its client is gone, and the client that the server is
stopping; the requests that have their body keep the grace.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("automator.daemon")

Message = dict[str, Any]
STOPPING = b"the server is stopping: send the request again"


class BodyCutoff:
    """An ASGI app around `app`; `cut_off()` (at shutdown) answers the requests still
    waiting for their body."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.stopping = asyncio.Event()

    def cut_off(self) -> None:
        self.stopping.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = _Request(self.stopping, receive, send)
        try:
            await self.app(scope, request.receive, request.send)
        except Exception:
            if not request.cut_off:
                raise
            # The app's way of meeting the client's disconnect (starlette: ClientDisconnect).
        if request.cut_off:
            where = {"fields": {"path": scope["path"]}}
            log.info("answered 503 to a request whose body had not all arrived: stopping", extra=where)


class _Request:
    """One request's receive and send, as BodyCutoff passes them to the app."""

    def __init__(self, stopping: asyncio.Event, receive: Any, send: Any) -> None:
        self.stopping = stopping
        self._receive = receive
        self._send = send
        self.body_arrived = False
        self.responding = False  # the app has started its answer
        self.cut_off = False  # answered 503 by us; what the app sends after is dropped

    async def receive(self) -> Message:
        if self.body_arrived:
            return await self._receive()  # e.g. a streaming response listening for a disconnect
        arriving = asyncio.ensure_future(self._receive())
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({arriving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not arriving.done():  # the server stops, or the request itself is cancelled
                arriving.cancel()
        if arriving.done() and not arriving.cancelled():
            message: Message = arriving.result()
            self.body_arrived = message["type"] != "http.request" or not message.get("more_body", False)
            return message
        if not self.responding:
            await self._answer_stopping()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if not self.cut_off:
            self.responding = True
            await self._send(message)

    async def _answer_stopping(self) -> None:
        self.cut_off = True
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(STOPPING)).encode()),
            (b"connection", b"close"),
        ]
        await self._send({"type": "http.response.start", "status": 503, "headers": headers})
        await self._send({"type": "http.response.body", "body": STOPPING})

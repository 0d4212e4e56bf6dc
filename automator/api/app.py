"""The HTTP API's routes: events and contacts in (automator's own shapes and Segment's),
erasure out, each behind an API key with the scope it needs.

A request is checked in the order a client can act on: its key (401, 403), its rate (429),
its size (413), its shape (400, 422), then each item (rejected by index, the others stored:
200, or 207 when some were rejected). The database work runs in the server's thread pool,
off the daemon's event loop, where ticks and dispatches keep their time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

import automator
from automator.api import schema, segment
from automator.api.intake import Intake, Outcome, Problem
from automator.api.keys import KeyRing
from automator.api.limits import MAX_BODY, BodyTooLarge, RateLimit, gunzipped, read_body
from automator.api.schema import INTAKE_ANSWERS, MAX_ITEMS, answers, body
from automator.clock import Clock, utcnow
from automator.display import undecodable
from automator.importing import normalize_email
from automator.importing.files import decoded_json
from automator.project import Project
from automator.store import Store, erasure
from automator.store.api_keys import Caller

log = logging.getLogger("automator.api")

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="automator", Basic realm="automator"'}
Items = list[tuple[int, Any]]


def create_app(project: Project, store: Store, clock: Clock = utcnow) -> FastAPI:
    """The API as an app of its own (its own error answers and OpenAPI document), served
    beside unsubscribe and health by `automator run --listen`."""
    settings = project.settings.api
    keys = KeyRing(store, clock)
    rate = RateLimit(settings.requests_per_second, settings.burst)
    intake = Intake(store, project.journey, project.settings.zone)
    app = FastAPI(
        title="automator API",
        version=automator.__version__,
        description="Events and contacts in, erasure out. See docs/api.md.",
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    _describe(app)

    def allowed(*scopes: str) -> Callable[..., Caller]:
        """A dependency: the caller, if its key is known, unrevoked, has one of `scopes` and
        is within its rate."""

        def check(authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> Caller:
            if authorization is None:
                raise HTTPException(401, "no API key: send Authorization: Bearer KEY", CHALLENGE)
            caller = keys.caller(authorization)
            if caller is None:
                raise HTTPException(401, "unknown API key", CHALLENGE)
            if caller.revoked:
                raise HTTPException(401, f"the API key {caller.name} was revoked", CHALLENGE)
            if not caller.scopes & set(scopes):
                raise HTTPException(403, f"the API key {caller.name} lacks the scope {' or '.join(scopes)}")
            if wait := rate.wait(caller.name):
                raise HTTPException(429, "too many requests for this key", {"Retry-After": str(wait)})
            return caller

        return check

    @app.exception_handler(OperationalError)
    async def database_busy(request: Request, exc: OperationalError) -> JSONResponse:
        locked = store.locked(exc)  # a passing condition, said in one line
        if locked is not None:
            log.warning(f"API request failed: {locked}")
        else:
            log.warning("API request failed: the database did not answer", exc_info=exc)
        detail = "the database is busy or unreachable: try again"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})

    @app.post(
        "/v1/events",
        response_model=schema.Outcome,
        responses=INTAKE_ANSWERS,
        openapi_extra=body(schema.Event, schema.EventBatch),
        summary="Send one event or a batch",
    )
    async def post_events(request: Request, caller: Caller = Depends(allowed("events:write"))) -> Any:
        items = _items(await _payload(request), "event", "type")
        return _answer(await run_in_threadpool(intake.events, items, clock()))

    @app.post(
        "/v1/contacts",
        response_model=schema.Outcome,
        responses=INTAKE_ANSWERS,
        openapi_extra=body(schema.Contact, schema.ContactBatch),
        summary="Upsert one contact or a batch, by email",
    )
    async def post_contacts(request: Request, caller: Caller = Depends(allowed("contacts:write"))) -> Any:
        items = _items(await _payload(request), "contact", "email")
        return _answer(await run_in_threadpool(intake.contacts, items, clock()))

    @app.delete(
        "/v1/contacts/{email}",
        response_model=schema.Erased,
        responses=answers(401, 403, 422, 429, 503),
        summary="Erase a contact and its personal data",
    )
    def delete_contact(email: str, caller: Caller = Depends(allowed("contacts:erase"))) -> Any:
        try:
            address = normalize_email(email)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        with store.transaction() as session:
            done = erasure.erase(
                session, address, clock(), f"api key {caller.name}", "erasure through the API"
            )
        return schema.Erased(
            found=done.contact_id is not None,
            events=done.events,
            messages=done.messages,
            cancelled=done.cancelled,
        )

    async def segment_calls(request: Request, caller: Caller, kind: str | None) -> JSONResponse:
        data = await _payload(request)
        if kind is None:
            calls = _items(data, "call", None)
            shared = data.get("context")
            calls = [(index, segment.with_context(call, shared)) for index, call in calls]
        elif isinstance(data, dict):
            calls = [(0, data)]
        else:
            raise HTTPException(422, f"the body is one {kind} call, a JSON object")
        outcome, events, contacts = _sort_calls(calls, kind, caller, settings.segment_events, clock)
        sent = dict(calls)
        stored = await run_in_threadpool(intake.contacts, contacts, clock())
        outcome.add(_in_segment_terms(stored, sent, "identify"))
        stored = await run_in_threadpool(intake.events, events, clock())
        outcome.add(_in_segment_terms(stored, sent, "track"))
        return _answer(outcome)

    def segment_route(path: str, kind: str | None, model: type[BaseModel], what: str, *scopes: str) -> None:
        async def take(request: Request, caller: Caller = Depends(allowed(*scopes))) -> Any:
            return await segment_calls(request, caller, kind)

        app.post(
            path,
            response_model=schema.Outcome,
            responses=INTAKE_ANSWERS,
            openapi_extra=body(model),
            summary=f"Segment: {what}",
            operation_id=f"segment_{kind or 'batch'}",
        )(take)

    segment_route("/v1/track", "track", schema.Track, "a track call (an event)", "events:write")
    segment_route(
        "/v1/identify", "identify", schema.Identify, "an identify call (a contact)", "contacts:write"
    )
    segment_route(
        "/v1/batch",
        None,
        schema.SegmentBatch,
        "a batch of track and identify calls",
        "events:write",
        "contacts:write",
    )
    return app


async def _payload(request: Request) -> Any:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise HTTPException(415, f"Content-Encoding {encoding} is not taken: send the body as it is, or gzip")
    try:
        raw = await read_body(request.headers.get("content-length"), request.stream())
        if encoding != "identity":
            raw = gunzipped(raw)
    except BodyTooLarge:
        unzipped = " once decompressed" if encoding != "identity" else ""
        raise HTTPException(
            413, f"the body passes {MAX_BODY // (1024 * 1024)} MB{unzipped}: send smaller batches"
        ) from None
    except ValueError as exc:  # not gzip
        raise HTTPException(400, f"the body is sent as gzip, but {exc}") from None
    try:
        return decoded_json(raw)  # as an import reads a line: no NaN, no endless nesting
    except ValueError as exc:
        raise HTTPException(400, f"the body is not JSON: {_not_utf8(raw) or exc}") from None


def _not_utf8(raw: bytes) -> str | None:
    """Where the body stops being UTF-8 (`not UTF-8 text: byte 0xe9 at line 1, column 40`),
    as an import says it of a line; orjson says only that some character is a surrogate."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column, what = undecodable(exc)
        return f"{what} at line {line}, column {column}"
    return None


def _items(data: Any, noun: str, own_field: str | None) -> Items:
    """A batch's items by index, or the one item; 422 for anything else. An object is a
    batch when it has a `batch` and not the item's own `own_field` (a contact may have an
    attribute called batch)."""
    if isinstance(data, dict) and "batch" in data and (own_field is None or own_field not in data):
        batch = data["batch"]
        if not isinstance(batch, list):
            raise HTTPException(422, f"batch: a list of at most {MAX_ITEMS} {noun}s")
        if len(batch) > MAX_ITEMS:
            raise HTTPException(422, f"batch: at most {MAX_ITEMS} {noun}s, this one holds {len(batch)}")
        return list(enumerate(batch))
    if isinstance(data, dict) and own_field is not None:
        return [(0, data)]
    shape = f'{{"batch": [...]}} with up to {MAX_ITEMS} {noun}s'
    raise HTTPException(422, f"the body is one {noun} (a JSON object) or {shape}" if own_field else shape)


def _sort_calls(
    calls: Items, kind: str | None, caller: Caller, names: dict[str, str], clock: Clock
) -> tuple[Outcome, Items, Items]:
    """Segment calls as automator's events and contacts; the calls that cannot be one, or
    that the key may not make, rejected."""
    outcome, events, contacts = Outcome(), [], []
    arrived = clock()
    for index, call in calls:
        try:
            found = segment.kind_of(call, kind)
            scope = "events:write" if found == "track" else "contacts:write"
            if scope not in caller.scopes:
                raise segment.NotMapped("type", f"the API key {caller.name} lacks the scope {scope}")
            if found == "track":
                events.append((index, segment.event_of(call, names, arrived)))
            else:
                contacts.append((index, segment.contact_of(call)))
        except segment.NotMapped as exc:
            outcome.reject(index, Problem(exc.field, exc.message))
    return outcome, events, contacts


def _in_segment_terms(outcome: Outcome, calls: dict[int, Any], kind: str) -> Outcome:
    """The outcome with each rejected field named as the Segment call sent it (`timestamp`,
    `messageId`, `traits.firstName`), not as the record it became names it."""
    outcome.rejected = {
        index: [Problem(segment.sent_field(p.field, calls[index], kind), p.message) for p in problems]
        for index, problems in outcome.rejected.items()
    }
    return outcome


def _answer(outcome: Outcome) -> JSONResponse:
    return JSONResponse(outcome.as_dict(), status_code=207 if outcome.rejected else 200)


def _describe(app: FastAPI) -> None:
    """The OpenAPI document with the request bodies and how a key is presented."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            found = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.add_request_models(found)
            found["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
                "basic": {"type": "http", "scheme": "basic", "description": "The key as the user name"},
            }
            found["security"] = [{"bearer": []}, {"basic": []}]
            app.openapi_schema = found
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]

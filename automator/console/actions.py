"""What support staff do: hold, release, cancel or send now one message; hold or cancel a
whole selection after seeing how many it touches; suppress or unsuppress a contact.

Each needs a reason and is recorded with who did it (the audit log, and the message's
history). The role check is here, on the server; the pages only hide what is not allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from automator import support
from automator.console.auth import Forbidden, Viewer
from automator.console.pages import QueueQuery, show_contact, show_message
from automator.console.state import RowId, allowed, console_of, current_viewer, query, render
from automator.errors import AlreadyDone, AutomatorError, NotFoundError, PermissionDenied, StateError
from automator.ids import MAX_ID
from automator.moments import shown_in
from automator.status import HoldKind
from automator.store import audit, contacts, suppressions
from automator.store import console as console_queries

router = APIRouter()

# URL segment → (what automator.support does, the permission it needs)
MESSAGE_ACTIONS: dict[str, tuple[Callable[..., Any], str]] = {
    "hold": (support.hold, "hold"),
    "release": (support.release, "release"),
    "cancel": (support.cancel, "cancel"),
    "send-now": (support.send_now, "send now"),
}

Reason = Annotated[str, Form()]


@router.post("/messages/{message_id}/{action}")
def message_action(
    request: Request,
    message_id: RowId,
    action: str,
    reason: Reason = "",
    viewer: Viewer = Depends(current_viewer),
) -> Response:
    if action not in MESSAGE_ACTIONS:
        raise NotFoundError(f"no action '{action}'")
    act, permission = MESSAGE_ACTIONS[action]
    if not viewer.can(permission):
        raise Forbidden(f"the {viewer.role} role cannot {permission}; ask an admin")
    console = console_of(request)
    try:
        with shown_in(viewer.zone):  # "was held at 17:02" in the viewer's zone, as on the page
            act(console.engine, message_id, reason, viewer.name, console.clock(), **_whose(viewer, action))
    except NotFoundError:
        raise
    except PermissionDenied as exc:
        raise Forbidden(str(exc)) from exc
    except AlreadyDone as exc:  # a second click: say it is done, not that it failed
        return show_message(request, viewer, message_id, notice=f"{str(exc)[0].upper()}{str(exc)[1:]}.")
    except AutomatorError as exc:
        status = 409 if isinstance(exc, StateError) else 400
        return show_message(request, viewer, message_id, error=str(exc), status=status, reason=reason)
    return RedirectResponse(f"/messages/{message_id}?done={action}", status_code=303)


def _whose(viewer: Viewer, action: str) -> dict[str, Any]:
    """A support user's hold is support's; support lifts only those (an admin's hold, a bulk
    hold, a hold for a coupon or a template error is an admin's to release)."""
    support = viewer.role == "support"
    if action == "hold":
        return {"kind": HoldKind.SUPPORT if support else HoldKind.ADMIN}
    if action == "release" and support:
        return {"only": frozenset({HoldKind.SUPPORT})}
    return {}


@router.get("/queue/bulk")
def bulk_confirm(
    request: Request,
    action: str,
    filters: QueueQuery = Depends(),
    viewer: Viewer = Depends(allowed("hold or cancel a whole selection")),
) -> Response:
    """Say how many messages the action would touch, and ask for a reason."""
    return _confirmation(request, viewer, action, filters)


def _confirmation(
    request: Request,
    viewer: Viewer,
    action: str,
    filters: QueueQuery,
    error: str | None = None,
    reason: str = "",
) -> Response:
    bulk = _bulk_action(action)
    where = filters.selection(viewer)
    with console_of(request).store.session() as session:
        chosen = console_queries.selection(session, where, bulk)
    return render(
        request,
        viewer,
        "bulk.html",
        status=400 if error else 200,
        here=f"/queue/bulk{query(filters.as_dict(), action=action)}",  # also after a refused POST
        section="queue",
        action=bulk,
        chosen=chosen,
        filters=filters.as_dict(),
        error=error,
        reason=reason,
    )


@router.post("/queue/bulk")
def bulk_apply(
    request: Request,
    action: Annotated[str, Form()],
    upto: Annotated[int, Form(ge=0, le=MAX_ID)],
    reason: Reason = "",
    status: Annotated[str, Form()] = "",
    rule: Annotated[str, Form()] = "",
    q: Annotated[str, Form()] = "",
    since: Annotated[str, Form()] = "",
    until: Annotated[str, Form()] = "",
    viewer: Viewer = Depends(allowed("hold or cancel a whole selection")),
) -> Response:
    """Apply the action to the messages that were counted (none queued since)."""
    filters = QueueQuery(status, rule, q, since, until)
    bulk = _bulk_action(action)
    try:
        reason = support.given_reason(reason)
    except AutomatorError as exc:
        return _confirmation(request, viewer, action, filters, str(exc), reason)
    console = console_of(request)
    where = filters.selection(viewer)
    with console.store.session() as session:
        touched = console_queries.apply(session, where, bulk, upto, reason, viewer.name, console.clock())
        # None touched, most often by a second click of the same button: say what holds.
        already = console_queries.already_done(session, where, bulk, upto) if touched == 0 else 0
    back = query(filters.as_dict(), done=action, touched=touched, already=already or None)
    return RedirectResponse(f"/queue{back}", status_code=303)


def _bulk_action(name: str) -> console_queries.BulkAction:
    if name not in console_queries.BULK_ACTIONS:
        raise AutomatorError(f"no bulk action '{name}' (hold or cancel)")
    return console_queries.BULK_ACTIONS[name]


@router.post("/contacts/{contact_id}/suppress")
def suppress(
    request: Request,
    contact_id: RowId,
    reason: Reason = "",
    kind: Annotated[str, Form()] = "blocked",
    viewer: Viewer = Depends(allowed("suppress")),
) -> Response:
    """Stop every rule from emailing this contact; queued messages to it are not sent."""
    if kind not in suppressions.REASONS:
        raise AutomatorError(f"the kind of suppression is one of {', '.join(suppressions.REASONS)}")
    return _change_suppression(request, viewer, contact_id, reason, kind)


@router.post("/contacts/{contact_id}/unsuppress")
def unsuppress(
    request: Request,
    contact_id: RowId,
    reason: Reason = "",
    viewer: Viewer = Depends(allowed("remove a suppression")),
) -> Response:
    """Let rules email this contact again."""
    return _change_suppression(request, viewer, contact_id, reason, None)


def _change_suppression(
    request: Request, viewer: Viewer, contact_id: int, reason: str, kind: str | None
) -> Response:
    console = console_of(request)
    try:
        reason = support.given_reason(reason)
    except AutomatorError as exc:
        return show_contact(request, viewer, contact_id, error=str(exc), status=400, reason=reason)
    now = console.clock()
    with console.store.session() as session:
        contact = contacts.by_id(session, contact_id)
        if contact is None:
            raise NotFoundError(f"contact {contact_id} does not exist")
        if kind is None:
            changed = suppressions.remove(session, contact.email)
        else:
            changed = suppressions.add(session, contact.email, kind, reason, now)
        action = "unsuppress" if kind is None else f"suppress ({kind})"
        if changed:
            audit.record(session, now, viewer.name, action, reason, contact_id=contact_id)
    if not changed:
        state = "was not suppressed" if kind is None else "is already suppressed"
        return show_contact(request, viewer, contact_id, error=f"{contact.email} {state}", status=409)
    done = "unsuppress" if kind is None else "suppress"
    return RedirectResponse(f"/contacts/{contact_id}?done={done}", status_code=303)

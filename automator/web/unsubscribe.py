"""Unsubscribe links (RFC 8058 one-click) and the operators' health check.

GET shows a confirmation page and changes nothing: mail scanners and link previewers
follow links, so only a POST (the mail client's one-click, or the page's button) acts.
The token is an HMAC over the address, so a forged or edited link is refused. Links signed
with a previous secret (`secret_previous`) stay valid: they are in inboxes already.
"""

from __future__ import annotations

import logging
from email.utils import parseaddr

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import DictLoader, Environment

from automator import emails
from automator.clock import Clock, utcnow
from automator.config import require_secret
from automator.project import Project
from automator.store import Store, contacts, messages, outage, suppressions

log = logging.getLogger("automator.web")
UNAVAILABLE = "database unavailable"  # /health's error: fixed words, the detail is in the log


PAGE = """<!doctype html>
<html lang="{{ locale }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ text.title }} · {{ shop }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }
button { font: inherit; padding: .5rem 1.25rem; cursor: pointer; }
</style>
</head>
<body>
<h1>{{ text.title }}</h1>
<p>{{ text.body.format(email=email) }}</p>
{% if ask %}
<form method="post">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">{{ text.button }}</button>
</form>
{% endif %}
<p><small>{{ shop }}</small></p>
</body>
</html>
"""

TEXT: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        "confirm": {
            "title": "Unsubscribe",
            "body": "Stop all marketing email to {email}?",
            "button": "Unsubscribe",
        },
        "done": {
            "title": "You are unsubscribed",
            "body": "{email} will get no more marketing email from us.",
        },
        "refused": {
            "title": "This unsubscribe link is not valid",
            "body": "The link is incomplete or was not made by us, so nothing was changed. "
            "Use the link in the latest email you received from us, or reply to that email "
            "and we will unsubscribe you.",
        },
    },
    "vi": {
        "confirm": {
            "title": "Hủy đăng ký",
            "body": "Ngừng nhận mọi email tiếp thị gửi tới {email}?",
            "button": "Hủy đăng ký",
        },
        "done": {
            "title": "Bạn đã hủy đăng ký",
            "body": "{email} sẽ không nhận thêm email tiếp thị nào từ chúng tôi nữa.",
        },
        "refused": {
            "title": "Liên kết hủy đăng ký không hợp lệ",
            "body": "Liên kết không đầy đủ hoặc không phải do chúng tôi tạo, nên không có gì "
            "thay đổi. Hãy dùng liên kết trong email gần nhất bạn nhận được, hoặc trả lời "
            "email đó để chúng tôi hủy đăng ký cho bạn.",
        },
    },
}

# Autoescaped: the address comes from the link, and anyone can edit a link.
_PAGES = Environment(loader=DictLoader({"page.html": PAGE}), autoescape=True)

# The token travels in the URL: keep it out of caches and other sites' Referer headers.
_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def create_app(project: Project, store: Store, clock: Clock = utcnow) -> FastAPI:
    """The daemon's HTTP app: `/unsubscribe` (GET confirms, POST acts) and `/health`.
    Refuses (ConfigError) a secret anyone could know: with it, anyone could forge a link."""
    settings = project.settings
    require_secret(settings, "the unsubscribe endpoint checks links with it", previous=True)
    shop = parseaddr(settings.sender)[0] or settings.sender
    app = FastAPI(title="automator", docs_url=None, redoc_url=None, openapi_url=None)

    def page(kind: str, locale: str, email: str, status: int = 200) -> HTMLResponse:
        text = TEXT[locale][kind]
        html = _PAGES.get_template("page.html").render(
            locale=locale, text=text, email=email, shop=shop, ask=kind == "confirm"
        )
        return HTMLResponse(html, status_code=status, headers=_PRIVATE)

    def locale_for(request: Request, email: str | None) -> str:
        """The contact's own language when the link is genuine, else the browser's."""
        if email is not None:
            with store.session() as session:
                contact = contacts.by_email(session, email)
            if contact is not None and contact.locale:
                return _known(contact.locale)
        return _known(request.headers.get("accept-language", ""))

    def genuine(email: str, token: str) -> bool:
        """Signed with the current secret or a previous one."""
        return bool(email and token) and any(
            emails.token_is_valid(secret, email, token) for secret in settings.unsubscribe_secrets
        )

    @app.get("/unsubscribe", response_class=HTMLResponse)
    def confirm(request: Request, email: str = "", token: str = "") -> HTMLResponse:
        """The page a person sees on clicking the link: it asks, and changes nothing."""
        if not genuine(email, token):
            return page("refused", locale_for(request, None), email, 403)
        return page("confirm", locale_for(request, email), email)

    @app.post("/unsubscribe", response_class=HTMLResponse)
    def unsubscribe(request: Request, email: str = "", token: str = "") -> HTMLResponse:
        """RFC 8058 one-click: suppress the address (it gets nothing more from any rule)."""
        if not genuine(email, token):
            return page("refused", locale_for(request, None), email, 403)
        address = email.lower()  # exactly what the token signs
        with store.session() as session:
            suppressions.add(session, address, "unsubscribed", "one-click unsubscribe link", clock())
        return page("done", locale_for(request, address), email)

    @app.get("/health")
    def health() -> JSONResponse:
        """For operators and load balancers: the database answers, and the queue by status."""
        try:
            with store.session() as session:
                counts = messages.counts_by_status(session)
        except Exception as exc:
            # The answer says what, the log why: the driver's words can name the database's
            # host, its user and the statement, which a health check's caller need not see.
            said = outage(exc)
            if said is None:
                log.exception("health check failed: database unavailable")
            else:
                log.warning("health check failed: database unavailable", extra={"fields": {"error": said}})
            return JSONResponse({"status": "error", "error": UNAVAILABLE}, status_code=503)
        return JSONResponse({"status": "ok", "queue": counts})

    return app


def _known(locale: str) -> str:
    """`vi`, `vi-VN` or an Accept-Language list starting with Vietnamese → vi; else en."""
    return "vi" if locale.strip().lower().startswith("vi") else "en"

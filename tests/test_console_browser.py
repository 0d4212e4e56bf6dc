"""The support console in a real browser (Debian's chromium, driven by Playwright): an agent
logs in, finds a contact by email, opens her queued Vietnamese cart reminder, checks what it
says and holds it with a reason; a script inside an email template never runs in the preview.

The screenshots in docs/screenshots/ are taken here: `AUTOMATOR_SCREENSHOTS=docs/screenshots
make test` refreshes them (without it they go to a temporary folder, and the tree stays clean).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from automator import support
from automator.console import create_app
from automator.engine import Engine
from automator.project import Project, load_project
from automator.store import Store, messages
from automator.testing import RecordingTransport
from tests.conftest import cart, utc
from tests.logins import PASSWORD, add_accounts, log_in_page  # noqa: F401  (PASSWORD: read from here too)
from tests.smtp_server import free_port

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Lan's cart, left at 21:00 in Saigon, is due at 22:00, inside quiet hours: the reminder
# waits in the queue until 08:00 local time.
EVENING_CART = utc("2026-11-20 14:00")
EVENING_TICK = utc("2026-11-20 15:00")
NOW = utc("2026-11-20 15:05")
VI_SUBJECT = "Bạn còn sản phẩm chưa thanh toán trong giỏ hàng"
REASON = "Khách hàng muốn chờ đến cuối tuần"
START = 10.0  # seconds the console may take to start answering


# Every test here logs in or adds users: with the cheapest Argon2 settings.
pytestmark = pytest.mark.usefixtures("cheap_password_hashing")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, the browser every test here drives; Playwright never downloads a
    browser of its own."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: `make test` installs it (apt-get install chromium)")
    return str(CHROMIUM)


@pytest.fixture
def page(chromium: str) -> Iterator[Any]:
    """A new page in a chromium started for this test alone, ended with it: nothing is left
    from another test, and no test waits on a browser that an earlier one left busy. The
    Playwright driver ends with the test too: one alive across tests would keep its event
    loop running in this thread, and every `asyncio.run` after it would fail."""
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, timeout=START * 1000 * 3
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="vi-VN")
            yield context.new_page()
            context.close()
        finally:
            browser.close()


def serve(project: Project, store: Store, engine: Engine) -> Iterator[str]:
    """The console on 127.0.0.1 in a background thread, until the test ends; its URL."""
    add_accounts(store, NOW, "sam")
    port = free_port()
    app = create_app(project, store, clock=lambda: NOW, engine=engine)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START
    while not server.started:
        assert thread.is_alive(), "the console stopped while starting"
        assert time.monotonic() < deadline, f"the console did not start within {START:g} s"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(START)


@pytest.fixture
def busy_day(
    make_contact: Callable[..., int],
    make_event: Callable[..., str],
    tick: Callable[..., Any],
    engine: Engine,
) -> None:
    """A day of the shop: reminders and thank-yous sent, a trial ending, one reminder
    cancelled by an admin, then the evening's carts waiting for the morning."""
    joined = {"_now": utc("2026-11-02 02:00")}
    make_contact("minh@example.com", first_name="Minh", locale="en", **joined)
    make_contact("hoa@example.com", first_name="Hoa", locale="vi", stage="retention", **joined)
    make_contact("binh@example.com", first_name="Bình", trial_ends_at="2026-11-23T05:00:00Z", **joined)
    make_contact("tuan@example.com", first_name="Tuấn", locale="vi", **joined)
    make_contact(
        "lan@example.com",
        first_name="Lan",
        last_name="Nguyễn",
        locale="vi",
        timezone="Asia/Ho_Chi_Minh",
        city="Thành phố Hồ Chí Minh",
        plan="Thành viên Vàng",
        **joined,
    )
    make_event("cart_updated", utc("2026-11-20 02:00"), email="minh@example.com", id="cart-m", **cart("m"))
    order = {"order_id": "A-1001", "total": 2_490_000, "currency": "VND"}
    make_event("order_placed", utc("2026-11-19 03:00"), email="hoa@example.com", id="order-h", **order)
    tick(utc("2026-11-20 03:30"))
    tick(utc("2026-11-20 05:30"))
    make_event("cart_updated", utc("2026-11-20 13:30"), email="tuan@example.com", id="cart-t", **cart("t"))
    make_event("page_viewed", utc("2026-11-20 13:40"), email="lan@example.com", id="view-1", page="/áo-dài")
    make_event("cart_updated", utc("2026-11-20 13:50"), email="minh@example.com", id="cart-m2", **cart("m2"))
    make_event("cart_updated", EVENING_CART, email="lan@example.com", id="cart-1", **cart())
    tick(EVENING_TICK)
    tuan = _only_message(engine, "tuan@example.com")
    support.cancel(engine, tuan, "Khách đã đặt hàng qua điện thoại", "ada", utc("2026-11-20 15:02"))


def _only_message(engine: Engine, email: str) -> int:
    with engine.store.session() as session:
        [found] = messages.listing(session, messages.QueueFilter(email=email))
    assert found.id is not None
    return found.id


@pytest.fixture
def console(busy_day: None, project: Project, store: Store, engine: Engine) -> Iterator[str]:
    yield from serve(project, store, engine)


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("AUTOMATOR_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_support_holds_a_vietnamese_cart_reminder_found_by_the_contacts_email(
    console, page, store, screenshots
) -> None:
    log_in_page(page, console)
    expect(page.locator("table.messages")).to_contain_text(VI_SUBJECT)
    page.screenshot(path=str(screenshots / "queue.png"), full_page=True)

    page.get_by_placeholder("Find a contact by email").fill("lan@example.com")
    page.get_by_placeholder("Find a contact by email").press("Enter")
    expect(page.locator("h1")).to_have_text("Lan Nguyễn")
    page.locator("table.messages").get_by_role("link", name=VI_SUBJECT).click()

    expect(page.locator("h1.subject-line")).to_have_text(VI_SUBJECT)
    preview = page.frame_locator("iframe.preview")
    expect(preview.get_by_text("Áo dài lụa")).to_be_visible()
    expect(preview.get_by_text("Tổng cộng")).to_be_visible()
    expect(preview.get_by_text("1.250.000 ₫").last).to_be_visible()

    page.get_by_label("Reason").fill(REASON)
    page.get_by_role("button", name="Hold", exact=True).click()

    expect(page.locator(".flash.notice")).to_contain_text("Held.")
    latest = page.locator(".timeline li").first
    expect(latest).to_contain_text("held")
    expect(latest).to_contain_text(REASON)
    expect(latest).to_contain_text("by sam")
    page.screenshot(path=str(screenshots / "message.png"), full_page=True)
    with store.session() as session:
        [held] = messages.listing(session, messages.QueueFilter(email="lan@example.com"))
    assert held.status == "held"

    page.get_by_role("link", name="lan@example.com").first.click()
    expect(page.locator("h1")).to_have_text("Lan Nguyễn")
    expect(page.get_by_text(REASON).first).to_be_visible()
    page.screenshot(path=str(screenshots / "contact.png"), full_page=True)


@pytest.fixture
def scripted_console(
    project_dir: Path, environ: dict[str, str], store: Store, make_contact: Callable[..., int], make_event
) -> Iterator[str]:
    """Lan's reminder from a template whose HTML holds scripts (project loaded after the edit)."""
    body = project_dir / "email_templates" / "abandoned_cart" / "body.vi.html"
    script = (
        "<script>document.title = 'pwned'; parent.document.title = 'pwned';"
        "document.body.insertAdjacentHTML('beforeend', '<p id=\"pwned\">pwned</p>')</script>"
        "<img src=\"data:,\" onerror=\"document.body.insertAdjacentHTML('beforeend', '<p id=pwned2>x</p>')\">"
    )
    text = body.read_text(encoding="utf-8").replace("{% block content %}", "{% block content %}" + script)
    body.write_text(text, encoding="utf-8")
    project = load_project(project_dir, environ)
    engine = Engine(project, store, RecordingTransport())
    make_contact("lan@example.com", first_name="Lan", locale="vi", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", EVENING_CART, email="lan@example.com", id="cart-1", **cart())
    asyncio.run(engine.tick(EVENING_TICK))
    yield from serve(project, store, engine)


def test_a_script_in_an_email_template_does_not_run_in_the_preview(scripted_console, page) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in_page(page, scripted_console)

    page.goto(f"{scripted_console}/messages/1")

    preview = page.frame_locator("iframe.preview")
    expect(preview.get_by_text("Áo dài lụa")).to_be_visible()  # the email itself renders
    expect(preview.locator("script")).to_have_count(1)  # the script is there…
    expect(preview.locator("#pwned")).to_have_count(0)  # …and did nothing
    expect(preview.locator("#pwned2")).to_have_count(0)
    assert page.title() == "Message 1 · automator console"
    assert errors == []


def test_the_time_zone_is_chosen_from_the_keyboard_and_applied_by_its_button(console, page) -> None:
    log_in_page(page, console)
    zone = page.get_by_label("Times in")
    before = zone.input_value()

    zone.focus()
    for _ in range(3):  # each arrow moves the choice; none reloads the page under the keyboard
        zone.press("ArrowDown")

    chosen = zone.input_value()
    assert chosen != before
    assert page.evaluate("document.activeElement.name") == "zone"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/queue$"))
    expect(page.get_by_label("Times in")).to_have_value(chosen)


def test_a_long_word_wraps_instead_of_widening_the_page(console, page, make_contact) -> None:
    contact = make_contact("long@example.com", first_name="W" * 200)  # the longest a name may be
    log_in_page(page, console)

    page.goto(f"{console}/contacts/{contact}")

    expect(page.locator("h1")).to_contain_text("WWWW")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.fixture
def more_carts(busy_day: None, make_event: Callable[..., str], tick: Callable[..., Any]) -> None:
    """Lan's evening carts: message numbers of two digits, beside long addresses. Ticked
    before the browser starts (a tick cannot run beside Playwright's event loop)."""
    for n in range(8):
        make_event("cart_updated", EVENING_CART, email="lan@example.com", id=f"cart-{n}", **cart(f"c{n}"))
    tick(EVENING_TICK)


def test_a_message_number_stays_on_one_line_on_a_laptop_screen(more_carts, console, page) -> None:
    log_in_page(page, console)
    page.set_viewport_size({"width": 1280, "height": 800})

    for path in ("/queue", "/contacts?q=lan@example.com"):
        page.goto(f"{console}{path}")
        numbers = page.locator("table.messages tbody td:first-child a")
        expect(numbers.last).to_be_visible()
        lines = numbers.evaluate_all("all => all.map(a => [a.textContent, a.getClientRects().length])")
        assert any(len(number) > 1 for number, _ in lines)
        assert [number for number, rects in lines if rects != 1] == []


def test_a_second_click_on_hold_while_the_first_is_answered_sends_nothing(console, page, engine) -> None:
    lan = _only_message(engine, "lan@example.com")
    log_in_page(page, console)
    page.goto(f"{console}/messages/{lan}")
    page.get_by_label("Reason").fill(REASON)
    hold = page.get_by_role("button", name="Hold", exact=True)
    box = hold.bounding_box()  # clicked again by the mouse: a locator would wait for the new page
    assert box is not None
    posts: list[str] = []

    def click_again_while_answered(route: Any) -> None:
        """The first POST reaches the console (the message is held); before its answer
        arrives, the person clicks again."""
        posts.append(route.request.url)
        answer = route.fetch(max_redirects=0)
        if len(posts) == 1:
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        route.fulfill(response=answer)

    page.route(f"**/messages/{lan}/hold", click_again_while_answered)
    hold.click()

    expect(page.locator(".flash.notice")).to_have_text("Held. It will not be sent until someone releases it.")
    assert posts == [f"{console}/messages/{lan}/hold"]


def test_a_reason_typed_after_the_session_cookie_is_gone_comes_back_after_the_login(
    console, page, engine, store
) -> None:
    lan = _only_message(engine, "lan@example.com")
    log_in_page(page, console)
    page.goto(f"{console}/messages/{lan}")
    page.get_by_label("Reason").fill(REASON)
    page.context.clear_cookies()  # the cookie expired and the browser deleted it

    page.get_by_role("button", name="Hold", exact=True).click()

    ended = "Your session has ended: log in again. The reason you typed is kept"
    expect(page.get_by_text(ended)).to_be_visible()
    page.get_by_label("Name").fill("sam")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{console}/messages/{lan}")
    expect(page.get_by_label("Reason")).to_have_value(REASON)
    with store.session() as session:
        assert messages.get(session, lan).status == "queued"  # not held: the agent looks and sends again


ANSWER_WITHIN = 30  # seconds: console.js's
# A form's request that never gets an answer, in the page: once a test sets `window.held`,
# what console.js lets go out is counted and kept from leaving. Playwright waits for a
# navigation under way before anything else it is asked, so a real request left unanswered
# would leave the test no way to look at the page meanwhile.
UNANSWERED = """
window.held = false;
window.sent = 0;
window.addEventListener("submit", (event) => {
  if (event.defaultPrevented || !window.held) return;
  window.sent += 1;
  event.preventDefault();
});
"""


def test_a_form_whose_answer_never_comes_gives_its_buttons_back_with_a_word_on_why(
    console, page, engine
) -> None:
    lan = _only_message(engine, "lan@example.com")
    page.clock.install(time=NOW)
    page.add_init_script(UNANSWERED)
    log_in_page(page, console)
    page.goto(f"{console}/messages/{lan}")
    page.clock.pause_at(NOW + timedelta(minutes=5))  # from here the page's time moves as told
    page.get_by_label("Reason").fill(REASON)
    hold = page.get_by_role("button", name="Hold", exact=True)
    page.evaluate("window.held = true")

    hold.click()
    expect(hold).to_be_disabled()
    hold.click(force=True)  # a second click while waiting: sent once still
    page.keyboard.press("Enter")
    page.clock.run_for((ANSWER_WITHIN - 1) * 1000)
    expect(hold).to_be_disabled()
    page.clock.run_for(2 * 1000)

    expect(hold).to_be_enabled()
    expect(page.get_by_role("alert")).to_have_text(
        f"The console has not answered within {ANSWER_WITHIN} seconds, so this may or may not have been "
        "done. Reload the page to see, or try again."
    )
    assert page.evaluate("window.sent") == 1
    page.evaluate("window.held = false")
    hold.click()  # the console answers again
    expect(page.locator(".flash.notice")).to_have_text("Held. It will not be sent until someone releases it.")

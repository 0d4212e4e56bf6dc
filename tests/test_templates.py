"""Email templates: money per locale, English fallback, strict names, escaping only in HTML."""

from pathlib import Path

import pytest

from automator.errors import TemplateError
from automator.formats import money
from automator.preview import preview
from automator.templates import Record, Templates
from tests.conftest import cart, utc

CART_AT = utc("2026-11-20 03:00")
NOW = utc("2026-11-20 04:00")


@pytest.fixture
def render_cart(engine, project, make_contact, make_event):
    """Render the shipped abandoned-cart email for a contact with one cart."""

    def render(locale=None, total=1_250_000, currency="VND", **properties):
        make_contact("lan@example.com", first_name="Lan", locale=locale, timezone="Asia/Ho_Chi_Minh")
        make_event(
            "cart_updated", CART_AT, id="cart-1", **{**cart(total=total, currency=currency), **properties}
        )
        return preview(engine.store, engine.renderer, project.rule("abandoned_cart"), "lan@example.com", NOW)

    return render


def write_template(root: Path, name: str, **parts: str) -> Templates:
    """A template folder with `body_txt=...`-style parts (missing parts get a stub)."""
    folder = root / name
    folder.mkdir(parents=True)
    for part in ("subject.txt", "body.txt", "body.html"):
        text = parts.get(part.replace(".", "_"), part)
        (folder / part).write_text(text, encoding="utf-8")
    return Templates(root)


def test_vietnamese_money_uses_dots_and_a_plain_space_before_the_dong_sign():
    assert money(1_250_000, "VND", "vi") == "1.250.000 ₫"


def test_english_dollars_have_the_sign_first_and_two_decimals():
    assert money(12.5, "USD", "en") == "$12.50"


def test_a_vietnamese_contact_gets_the_vietnamese_variant_with_dong_amounts(render_cart):
    rendered = render_cart(locale="vi")
    assert rendered.subject == "Bạn còn sản phẩm chưa thanh toán trong giỏ hàng"
    assert "Tổng cộng: 1.250.000 ₫" in rendered.text


def test_an_english_contact_sees_dollar_amounts(render_cart):
    rendered = render_cart(locale="en", total=12.5, currency="USD")
    assert "Total: $12.50" in rendered.text


def test_a_locale_without_a_variant_falls_back_to_the_english_text(render_cart):
    rendered = render_cart(locale="fr")
    assert rendered.subject == "You left something in your cart"
    assert rendered.text.startswith("Hi Lan,")


def test_a_locale_without_a_variant_formats_money_as_english_too(render_cart):
    rendered = render_cart(locale="fr")
    assert "Total: ₫1,250,000" in rendered.text


def test_the_english_fallback_html_declares_english(render_cart):
    assert '<html lang="en">' in render_cart(locale="fr").html


def test_a_locale_nobody_knows_still_renders_in_english(render_cart):
    rendered = render_cart(locale="xx")
    assert "Total: ₫1,250,000" in rendered.text


@pytest.mark.parametrize("locale", ["vi", "vi-VN", "vi_VN", "VI"])
def test_a_locale_written_with_either_separator_picks_the_same_version(project, locale):
    """Locales are kept as given (pt_BR is not rewritten pt-BR): the language, the first
    subtag, picks the version, whichever separator follows it."""
    assert project.templates.language_for("abandoned_cart", locale) == "vi"


def test_a_contact_without_a_locale_gets_english(render_cart):
    assert render_cart(locale=None).subject == "You left something in your cart"


def test_html_part_escapes_markup_from_event_properties(render_cart):
    rendered = render_cart(items=[{"name": "<script>alert(1)</script>", "quantity": 1, "price": 10}])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "<script>" not in rendered.html


def test_text_part_keeps_event_properties_as_written(render_cart):
    rendered = render_cart(items=[{"name": "<script>alert(1)</script>", "quantity": 1, "price": 10}])
    assert "- <script>alert(1)</script> x 1:" in rendered.text
    assert "&lt;" not in rendered.text


def test_event_items_is_the_property_not_the_dict_method(tmp_path):
    templates = write_template(
        tmp_path, "t", body_txt="{% for item in event.items %}{{ item.name }};{% endfor %}"
    )
    event = Record({"items": [{"name": "Áo dài"}, {"name": "Nón lá"}]})
    assert templates.render("t", "en", {"event": event}).text == "Áo dài;Nón lá;"


def test_an_undefined_name_names_the_template_file_and_line(tmp_path):
    templates = write_template(
        tmp_path, "t", body_txt="Hello\n{{ contact.first_name }}\n{{ contact.nickname }}\n"
    )
    with pytest.raises(TemplateError) as raised:
        templates.render("t", "en", {"contact": Record({"first_name": "Lan"})})
    error = raised.value
    assert (error.template, error.line) == ("email_templates/t/body.txt", 3)
    assert "nickname" in error.message
    assert str(error).startswith("email_templates/t/body.txt:3: undefined: ")


def test_an_undefined_name_in_an_html_part_with_a_layout_names_the_part_and_its_line(tmp_path):
    (tmp_path / "_layout.html").write_text("<html>{% block content %}{% endblock %}</html>")
    templates = write_template(
        tmp_path,
        "t",
        body_html='{% extends "_layout.html" %}\n{% block content %}\n<p>{{ coupon.code }}</p>\n'
        "{% endblock %}",
    )
    with pytest.raises(TemplateError) as raised:
        templates.render("t", "en", {"coupon": Record({})})
    assert (raised.value.template, raised.value.line) == ("email_templates/t/body.html", 3)


def test_a_missing_variable_is_an_error_not_an_empty_string(tmp_path):
    templates = write_template(tmp_path, "t", subject_txt="Hi {{ first_name }}")
    with pytest.raises(TemplateError, match="first_name"):
        templates.render("t", "en", {})


def test_a_subject_written_over_several_lines_becomes_one_line(tmp_path):
    templates = write_template(tmp_path, "t", subject_txt="Your cart\n  is   waiting\n")
    assert templates.render("t", "en", {}).subject == "Your cart is waiting"


def test_the_sandbox_refuses_to_reach_python_internals(tmp_path):
    templates = write_template(tmp_path, "t", body_txt="{{ contact.__class__.__mro__ }}")
    with pytest.raises(TemplateError):
        templates.render("t", "en", {"contact": Record({})})

"""Money, dates and numbers as a contact's language writes them (Babel's CLDR data), for the
templates' filters. Babel is imported where it formats: `automator check` parses templates
without it."""

from __future__ import annotations

import functools
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from babel import Locale


def money(amount: Any, currency: str, lang: str) -> str:
    """`1250000, 'VND'` → `1.250.000 ₫` in Vietnamese, `$12.50` for USD in English."""
    return _money(str(amount), str(currency), lang)


@functools.lru_cache(maxsize=16384)  # Babel's formatting is slow and prices repeat
def _money(amount: str, currency: str, lang: str) -> str:
    from babel.numbers import format_currency

    value = Decimal(amount)
    # CLDR puts a no-break space before ₫; plain text readers and searches expect a space.
    return format_currency(value, currency, locale=_babel_locale(lang)).replace("\xa0", " ")


@functools.lru_cache(maxsize=4096)
def local_date(value: date | datetime, lang: str, zone: str) -> str:
    from babel.dates import format_date

    if isinstance(value, datetime):
        value = value.astimezone(ZoneInfo(zone)).date()
    return format_date(value, format="long" if lang == "en" else "medium", locale=_babel_locale(lang))


def local_datetime(value: datetime, lang: str, zone: str) -> str:
    from babel.dates import format_datetime

    return format_datetime(value.astimezone(ZoneInfo(zone)), format="medium", locale=_babel_locale(lang))


def number(value: Any, lang: str) -> str:
    from babel.numbers import format_decimal

    return format_decimal(value, locale=_babel_locale(lang))


@functools.lru_cache(maxsize=64)
def _babel_locale(lang: str) -> Locale:
    from babel import Locale

    return Locale.parse({"en": "en_US", "vi": "vi_VN"}.get(lang, lang))

"""Send-time policies: quiet hours in the contact's own time zone, and the frequency cap."""

from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest

from automator.policies import cap_until, quiet_until
from tests.conftest import utc

SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")  # UTC+7 all year
NEW_YORK = ZoneInfo("America/New_York")
NIGHT = (time(21, 0), time(8, 0))  # wraps midnight
LUNCH = (time(12, 0), time(14, 0))  # does not

# A message due at the first time (UTC) waits until the last (UTC), or goes at once (None).
QUIET_HOURS = {
    # 15:00 UTC is 22:00 in Saigon; 08:00 there on the 21st is 01:00 UTC.
    "evening in Saigon waits until 08:00": ("2026-11-20 15:00", SAIGON, NIGHT, "2026-11-21 01:00"),
    # 20:00 UTC on the 20th is 03:00 on the 21st in Saigon.
    "small hours in Saigon wait until 08:00": ("2026-11-20 20:00", SAIGON, NIGHT, "2026-11-21 01:00"),
    "daytime in Saigon is not quiet": ("2026-11-20 03:00", SAIGON, NIGHT, None),
    "quiet hours begin exactly at their start": ("2026-11-20 14:00", SAIGON, NIGHT, "2026-11-21 01:00"),
    "quiet hours are over exactly at their end": ("2026-11-21 01:00", SAIGON, NIGHT, None),
    "a minute before the end waits for the end": ("2026-11-21 00:59", SAIGON, NIGHT, "2026-11-21 01:00"),
    # The instant that is 22:00 in Saigon is 10:00 in New York.
    "Saigon's quiet evening is New York's morning": ("2026-11-20 15:00", NEW_YORK, NIGHT, None),
    # 2026-11-01 02:00 UTC is 22:00 EDT on Oct 31; the clocks go back that night, so 08:00 on
    # Nov 1 is EST (UTC-5) = 13:00 UTC, not 12:00.
    "New York's night ends at 08:00 EST after the clocks go back": (
        "2026-11-01 02:00", NEW_YORK, NIGHT, "2026-11-01 13:00"
    ),
    # 05:30 and 06:30 UTC are both 01:30 local on 2026-11-01 (EDT, then EST).
    "New York's repeated hour, the first time": ("2026-11-01 05:30", NEW_YORK, NIGHT, "2026-11-01 13:00"),
    "New York's repeated hour, the second time": ("2026-11-01 06:30", NEW_YORK, NIGHT, "2026-11-01 13:00"),
    # 2026-03-08 02:00 UTC is 21:00 EST on Mar 7; 08:00 EDT on Mar 8 is 12:00 UTC.
    "New York's night ends at 08:00 EDT after the clocks go forward": (
        "2026-03-08 02:00", NEW_YORK, NIGHT, "2026-03-08 12:00"
    ),
    # 06:00 UTC is 13:00 in Saigon, inside 12:00–14:00; the end is 07:00 UTC the same day.
    "a window within one day holds until its end": ("2026-11-20 06:00", SAIGON, LUNCH, "2026-11-20 07:00"),
    "a window within one day leaves the night alone": ("2026-11-20 16:00", SAIGON, LUNCH, None),
    "a window within one day includes its start": ("2026-11-20 05:00", SAIGON, LUNCH, "2026-11-20 07:00"),
    "a window within one day does not include its end": ("2026-11-20 07:00", SAIGON, LUNCH, None),
}  # fmt: skip


@pytest.mark.parametrize(("due", "zone", "window", "until"), QUIET_HOURS.values(), ids=QUIET_HOURS.keys())
def test_quiet_hours_hold_a_message_until_they_end_in_the_contacts_time_zone(
    due: str, zone: ZoneInfo, window: tuple[time, time], until: str | None
) -> None:
    assert quiet_until(utc(due), zone, *window) == (utc(until) if until else None)


DAY = timedelta(hours=24)
NOW = utc("2026-11-20 12:00")

# At most 2 per 24 h: after these sends, a message due at NOW waits until the time given (UTC),
# or goes at once (None).
FREQUENCY_CAP = {
    "under the cap a message may go now": (["2026-11-20 09:00"], None),
    "at the cap the next waits until the oldest send leaves the window": (
        ["2026-11-20 09:00", "2026-11-19 18:00"], "2026-11-20 18:00"
    ),
    "sends older than the window do not count": (
        ["2026-11-20 09:00", "2026-11-19 11:59", "2026-11-18 12:00"], None
    ),
    "a send exactly one window ago has already left it": (["2026-11-20 09:00", "2026-11-19 12:00"], None),
    # Three sends, at most two per day: two must leave before one more may go.
    "over the cap the wait lasts until enough sends have left the window": (
        ["2026-11-20 10:00", "2026-11-19 14:00", "2026-11-19 20:00"], "2026-11-20 20:00"
    ),
}  # fmt: skip


@pytest.mark.parametrize(("sent", "until"), FREQUENCY_CAP.values(), ids=FREQUENCY_CAP.keys())
def test_the_frequency_cap_holds_a_message_until_a_send_leaves_the_window(
    sent: list[str], until: str | None
) -> None:
    assert cap_until([utc(at) for at in sent], 2, DAY, NOW) == (utc(until) if until else None)

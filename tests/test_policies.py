"""Send-time policies: quiet hours in the contact's own time zone, and the frequency cap."""

from datetime import time, timedelta
from zoneinfo import ZoneInfo

from automator.policies import cap_until, quiet_until
from tests.conftest import utc

SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")  # UTC+7 all year
NEW_YORK = ZoneInfo("America/New_York")
NIGHT = (time(21, 0), time(8, 0))  # wraps midnight
LUNCH = (time(12, 0), time(14, 0))  # does not


def test_evening_in_saigon_waits_until_eight_the_next_morning():
    # 15:00 UTC is 22:00 in Saigon; 08:00 there on the 21st is 01:00 UTC.
    assert quiet_until(utc("2026-11-20 15:00"), SAIGON, *NIGHT) == utc("2026-11-21 01:00")


def test_small_hours_in_saigon_wait_until_eight_the_same_morning():
    # 20:00 UTC on the 20th is 03:00 on the 21st in Saigon.
    assert quiet_until(utc("2026-11-20 20:00"), SAIGON, *NIGHT) == utc("2026-11-21 01:00")


def test_daytime_in_saigon_is_not_quiet():
    assert quiet_until(utc("2026-11-20 03:00"), SAIGON, *NIGHT) is None


def test_quiet_hours_begin_exactly_at_their_start():
    assert quiet_until(utc("2026-11-20 14:00"), SAIGON, *NIGHT) == utc("2026-11-21 01:00")


def test_quiet_hours_are_over_exactly_at_their_end():
    assert quiet_until(utc("2026-11-21 01:00"), SAIGON, *NIGHT) is None


def test_a_minute_before_the_end_still_waits_for_the_end():
    assert quiet_until(utc("2026-11-21 00:59"), SAIGON, *NIGHT) == utc("2026-11-21 01:00")


def test_the_same_utc_instant_is_quiet_in_saigon_but_not_in_new_york():
    at = utc("2026-11-20 15:00")  # 22:00 in Saigon, 10:00 in New York
    assert quiet_until(at, SAIGON, *NIGHT) is not None
    assert quiet_until(at, NEW_YORK, *NIGHT) is None


def test_new_york_night_ends_at_eight_standard_time_after_the_clocks_go_back():
    # 2026-11-01 02:00 UTC is 22:00 EDT on Oct 31; the clocks go back that night,
    # so 08:00 on Nov 1 is EST (UTC-5) = 13:00 UTC, not 12:00.
    assert quiet_until(utc("2026-11-01 02:00"), NEW_YORK, *NIGHT) == utc("2026-11-01 13:00")


def test_the_repeated_hour_in_new_york_is_quiet_until_eight_standard_time():
    # 05:30 and 06:30 UTC are both 01:30 local on 2026-11-01 (EDT, then EST).
    assert quiet_until(utc("2026-11-01 05:30"), NEW_YORK, *NIGHT) == utc("2026-11-01 13:00")
    assert quiet_until(utc("2026-11-01 06:30"), NEW_YORK, *NIGHT) == utc("2026-11-01 13:00")


def test_new_york_night_ends_at_eight_daylight_time_after_the_clocks_go_forward():
    # 2026-03-08 02:00 UTC is 21:00 EST on Mar 7; 08:00 EDT on Mar 8 is 12:00 UTC.
    assert quiet_until(utc("2026-03-08 02:00"), NEW_YORK, *NIGHT) == utc("2026-03-08 12:00")


def test_a_window_within_one_day_holds_messages_inside_it_until_its_end():
    # 06:00 UTC is 13:00 in Saigon, inside 12:00–14:00; the end is 07:00 UTC the same day.
    assert quiet_until(utc("2026-11-20 06:00"), SAIGON, *LUNCH) == utc("2026-11-20 07:00")


def test_a_window_within_one_day_leaves_the_night_alone():
    assert quiet_until(utc("2026-11-20 16:00"), SAIGON, *LUNCH) is None  # 23:00 local


def test_a_window_within_one_day_does_not_include_its_end():
    assert quiet_until(utc("2026-11-20 07:00"), SAIGON, *LUNCH) is None  # 14:00 local
    assert quiet_until(utc("2026-11-20 05:00"), SAIGON, *LUNCH) == utc("2026-11-20 07:00")  # 12:00


DAY = timedelta(hours=24)
NOW = utc("2026-11-20 12:00")


def test_under_the_cap_a_message_may_go_now():
    assert cap_until([utc("2026-11-20 09:00")], 2, DAY, NOW) is None


def test_at_the_cap_the_next_message_waits_until_the_oldest_send_leaves_the_window():
    sent = [utc("2026-11-20 09:00"), utc("2026-11-19 18:00")]
    assert cap_until(sent, 2, DAY, NOW) == utc("2026-11-20 18:00")


def test_sends_older_than_the_window_do_not_count():
    sent = [utc("2026-11-20 09:00"), utc("2026-11-19 11:59"), utc("2026-11-18 12:00")]
    assert cap_until(sent, 2, DAY, NOW) is None


def test_a_send_exactly_one_window_ago_has_already_left_it():
    sent = [utc("2026-11-20 09:00"), utc("2026-11-19 12:00")]
    assert cap_until(sent, 2, DAY, NOW) is None


def test_over_the_cap_the_wait_lasts_until_enough_sends_have_left_the_window():
    # Three sends, at most two per day: two must leave before one more may go.
    sent = [utc("2026-11-20 10:00"), utc("2026-11-19 14:00"), utc("2026-11-19 20:00")]
    assert cap_until(sent, 2, DAY, NOW) == utc("2026-11-20 20:00")

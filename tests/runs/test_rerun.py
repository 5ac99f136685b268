"""The rerun rule (issue 22, DESIGN 13): which entries get another round, and the free
minute it is sent at (pure functions of planrunner/runs/rerun.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from planrunner import ledger
from planrunner.ledger import Send
from planrunner.outcome import Entry
from planrunner.runs.rerun import free_minute, newest_send, next_round, rerun_due

BERLIN = ZoneInfo("Europe/Berlin")
GMT8 = timezone(timedelta(hours=8))
KOLKATA = ZoneInfo("Asia/Kolkata")
GW = "https://gw"
MIN = 60_000


def ms(text: str, zone: tzinfo = UTC) -> int:
    """Epoch ms of a wall time in ``zone`` (``fold=1`` by a trailing ``+fold``)."""
    fold = text.endswith("+fold")
    dt = datetime.fromisoformat(text.removesuffix("+fold")).replace(tzinfo=zone, fold=int(fold))
    return int(dt.timestamp() * 1000)


def wall(t: int, zone: tzinfo) -> str:
    return datetime.fromtimestamp(t / 1000, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


# -- free_minute ---------------------------------------------------------------------------------


def test_i22_a_rerun_goes_to_the_next_minute_at_the_trigger_times_seconds() -> None:
    t = ms("2026-01-05 10:00:30")
    assert free_minute(t, t, set(), UTC) == ms("2026-01-05 10:01:30")
    # After a rerun already made, the next one goes after that one's minute.
    assert free_minute(t, ms("2026-01-05 10:07:30"), set(), UTC) == ms("2026-01-05 10:08:30")


def test_i22_taken_minutes_are_skipped_whatever_their_seconds() -> None:
    t = ms("2026-01-05 10:00:30")
    taken = {ms("2026-01-05 10:01"), ms("2026-01-05 10:02:45"), ms("2026-01-05 10:04")}
    assert free_minute(t, t, taken, UTC) == ms("2026-01-05 10:03:30")


def test_i22_an_hour_whose_minutes_are_all_taken_has_no_free_minute() -> None:
    t = ms("2026-01-05 10:00:30")
    every = {ms("2026-01-05 10:00") + m * MIN for m in range(60)}
    assert free_minute(t, t, every, UTC) is None
    assert free_minute(t, t, every - {ms("2026-01-05 10:59")}, UTC) == ms("2026-01-05 10:59:30")
    # The minute after the last sent one leaves the hour: none either.
    assert free_minute(t, ms("2026-01-05 10:59:30"), set(), UTC) is None
    # Minutes before the last sent one never count, free or not.
    assert free_minute(t, ms("2026-01-05 10:58:30"), {ms("2026-01-05 10:59")}, UTC) is None


def test_i22_gmt8_the_hour_is_the_server_zones_and_the_date_never_changes() -> None:
    t = ms("2026-01-02 23:58:10", GMT8)  # 15:58:10 UTC
    got = free_minute(t, t, set(), GMT8)
    assert got is not None and wall(got, GMT8) == "2026-01-02 23:59:10 UTC+08:00"
    assert free_minute(t, got, set(), GMT8) is None  # 00:00 is the next server-zone date
    mid = ms("2026-01-02 10:30:00", GMT8)
    hour = {ms("2026-01-02 10:31", GMT8) + m * MIN for m in range(29)}
    assert free_minute(mid, mid, hour, GMT8) is None


def test_i22_a_half_hour_zone_keeps_its_own_hour_across_a_utc_hour() -> None:
    t = ms("2026-01-05 16:20:00", KOLKATA)  # 10:50 UTC; the server-zone hour ends at 11:29 UTC
    taken = {ms("2026-01-05 16:21", KOLKATA) + m * MIN for m in range(15)}
    got = free_minute(t, t, taken, KOLKATA)
    assert got == ms("2026-01-05 11:06") and wall(got, KOLKATA) == "2026-01-05 16:36:00 IST"
    full = {ms("2026-01-05 16:21", KOLKATA) + m * MIN for m in range(39)}
    assert free_minute(t, t, full, KOLKATA) is None


def test_i22_berlin_spring_forward_the_hour_before_the_gap_ends_at_the_gap() -> None:
    # 2026-03-29: 02:00 CET becomes 03:00 CEST.
    t = ms("2026-03-29 01:58:00", BERLIN)
    got = free_minute(t, t, set(), BERLIN)
    assert got is not None and wall(got, BERLIN) == "2026-03-29 01:59:00 CET"
    assert free_minute(t, got, set(), BERLIN) is None  # the next minute is 03:00 CEST
    after = ms("2026-03-29 03:00:00", BERLIN)
    got = free_minute(after, after, set(), BERLIN)
    assert got is not None and wall(got, BERLIN) == "2026-03-29 03:01:00 CEST"


def test_i22_berlin_fall_back_only_the_occurrence_of_the_repeated_hour_it_is_in() -> None:
    # 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:00-02:59 happens twice.
    first = ms("2026-10-25 02:58:20", BERLIN)  # CEST, 00:58:20 UTC
    got = free_minute(first, first, set(), BERLIN)
    assert got is not None and wall(got, BERLIN) == "2026-10-25 02:59:20 CEST"
    # Its next minute is 02:00 CET: the same wall hour, but another hour of the day.
    assert free_minute(first, got, set(), BERLIN) is None
    second = ms("2026-10-25 02:10:20+fold", BERLIN)  # CET, 01:10:20 UTC
    got = free_minute(second, second, set(), BERLIN)
    assert got is not None and wall(got, BERLIN) == "2026-10-25 02:11:20 CET"
    # An instance of the first 02:11 (CEST) has the same wall-clock minute, so the same
    # instance id: that minute is taken in the second occurrence too.
    twin = ms("2026-10-25 02:11:00", BERLIN)
    got = free_minute(second, second, {twin}, BERLIN)
    assert got is not None and wall(got, BERLIN) == "2026-10-25 02:12:20 CET"


@pytest.mark.parametrize("zone", [UTC, GMT8, BERLIN, KOLKATA], ids=str)
def test_i22_every_free_minute_is_after_the_last_sent_in_its_hour_and_free(zone: tzinfo) -> None:
    start = ms("2026-10-24 22:00:00")
    found = 0
    for step in range(0, 8 * 60, 7):
        t = start + step * MIN + 17_000
        taken = {t - t % MIN + k * MIN for k in (1, 2, 5)}
        got = free_minute(t, t, taken, zone)
        if got is None:
            continue
        assert got > t and got % MIN == t % MIN
        assert got - got % MIN not in taken
        local_t = datetime.fromtimestamp(t / 1000, zone)
        local_got = datetime.fromtimestamp(got / 1000, zone)
        assert (local_got.date(), local_got.hour) == (local_t.date(), local_t.hour)
        assert got - t < 3_600_000
        found += 1
    assert found > 40  # most hours have a free minute


# -- rerun_due -------------------------------------------------------------------------------------

ENTRY = Entry(ms("2026-01-05 10:00:30"), 1, "f1", "o1", 0)


def records(*rounds: tuple[int, str]) -> list[dict[str, Any]]:
    """Per (round, outcome) an attempt as the engine writes it."""
    out: list[dict[str, Any]] = []
    for rnd, outcome in rounds:
        ref = Send(ENTRY, rnd, ENTRY.trigger_time + rnd * MIN if rnd else None)
        a = f"r.{len(out)}"
        out.append(ledger.intent(ref, a, gateway=GW, flow="f1", run="r"))
        if outcome in ("triggered", "cancelled"):
            out.append(ledger.triggered(ref, a, gateway=GW, flow_instance_id=f"i{rnd}"))
        if outcome == "cancelled":
            out.append(ledger.cancelled(ref, a + "c", gateway=GW, flow_instance_id=f"i{rnd}"))
        if outcome == "failed":
            out.append(ledger.failed(ref, a, gateway=GW, code=1, msg="m"))
    return out


def state(*rounds: tuple[int, str]) -> ledger.KeyState:
    return ledger.fold_into(ledger.Folded(), records(*rounds)).state(ENTRY.key)


@pytest.mark.parametrize("instance", ["FAIL", "TIMEOUT", "INTERNAL_ERROR"])
def test_i22_a_done_entry_whose_instance_failed_is_rerun_while_rounds_remain(instance: str) -> None:
    assert rerun_due(state((0, "triggered")), instance, 1)
    assert rerun_due(state((0, "triggered"), (1, "triggered")), instance, 2)
    assert not rerun_due(state((0, "triggered"), (1, "triggered")), instance, 1)  # its one rerun is used
    assert not rerun_due(state((0, "triggered")), instance, 0)  # reruns not asked for


@pytest.mark.parametrize("instance", ["SUCCESS", "RUNNING", "CANCEL", "SKIP", "not-found", "lookup-failed", None])
def test_i22_an_instance_that_did_not_fail_is_not_rerun(instance: str | None) -> None:
    assert not rerun_due(state((0, "triggered")), instance, 3)


def test_i22_a_cancelled_entry_is_never_rerun() -> None:
    assert not rerun_due(state((0, "cancelled")), "FAIL", 3)
    assert not rerun_due(state((0, "triggered"), (1, "cancelled")), "FAIL", 3)
    # A cancelled older round too (cancel is deliberate), whatever the newest did.
    assert not rerun_due(state((0, "cancelled"), (1, "triggered")), "FAIL", 3)


def test_i22_an_entry_not_done_is_not_a_rerun_candidate() -> None:
    assert not rerun_due(state(), "FAIL", 3)  # pending
    assert not rerun_due(state((0, "triggered"), (1, "failed")), "FAIL", 3)  # failed: sent again instead
    assert not rerun_due(state((0, "triggered"), (1, "open")), "FAIL", 3)  # unknown: looked up first


# -- next_round and newest_send --------------------------------------------------------------------


def test_i22_next_round_is_the_following_round_at_the_free_minute() -> None:
    st = state((0, "triggered"), (1, "triggered"))
    taken = {ENTRY.trigger_time - ENTRY.trigger_time % MIN + 2 * MIN}
    got = next_round(ENTRY, st, taken, UTC, {"p": "v"})
    assert got == Send(ENTRY, 2, ms("2026-01-05 10:03:30"), {"p": "v"})
    rec = ledger.intent(got, "x.1", gateway=GW, flow="f1", run="r") if isinstance(got, Send) else {}
    assert (rec["round"], rec["sentTime"], rec["parameters"]) == (2, ms("2026-01-05 10:03:30"), {"p": "v"})


def test_i22_an_entry_whose_hour_has_no_free_minute_is_reported_as_such() -> None:
    st = state((0, "triggered"))
    hour = {ms("2026-01-05 10:00") + m * MIN for m in range(60)}
    assert next_round(ENTRY, st, hour, UTC) == "cannot rerun: no free minute in 10:00-10:59"
    assert next_round(ENTRY, st, hour, GMT8) == "cannot rerun: no free minute in 18:00-18:59"


def test_i22_newest_send_writes_the_newest_rounds_records() -> None:
    recs = records((0, "triggered"), (1, "open"))
    recs[-1]["parameters"] = {"p": "1"}
    st = ledger.fold_into(ledger.Folded(), recs).state(ENTRY.key)
    (attempt,) = st.open_attempts
    ref = newest_send(ENTRY, st, attempt)
    assert ref == Send(ENTRY, 1, ENTRY.trigger_time + MIN, {"p": "1"})
    found = ledger.reconciled(ref, attempt, gateway=GW, found=True, flow_instance_id="i1")
    after = ledger.fold_into(ledger.Folded(), [*recs, found])
    assert after.state(ENTRY.key).parameters == {"p": "1"} and after.done[ENTRY.key] == "i1"
    assert newest_send(ENTRY, state((0, "triggered"))) == Send(ENTRY)

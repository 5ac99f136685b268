"""The run's adaptive send rate: its arithmetic on a fake clock, and a run under a quota."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from planrunner import rate as ratelib
from planrunner.rate import RateLimiter
from planrunner.sim import Dialect, Faults, Simulator
from testing import cron_flows, write_plan


def free_sends(limiter: RateLimiter, times: list[float]) -> list[ratelib.Slot]:
    return [limiter.reserve(t) for t in times]


# -- arithmetic ------------------------------------------------------------------------------


def test_without_a_rate_it_sends_freely() -> None:
    limiter = RateLimiter(clock=lambda: 0.0)
    slots = free_sends(limiter, [1.0, 1.0, 1.0, 1.5])
    assert [s.at for s in slots] == [1.0, 1.0, 1.0, 1.5]
    assert limiter.rate is None
    assert limiter.learned is None
    limiter.on_success(slots[0])
    assert limiter.rate is None  # nothing to raise


def test_first_429_halves_the_observed_send_rate() -> None:
    limiter = RateLimiter(clock=lambda: 0.0)
    slots = free_sends(limiter, [i / 100 for i in range(10)])  # 10 sends in 0.1 s
    assert limiter.on_throttled(slots[-1], now=0.1) is True
    assert limiter.rate == pytest.approx(50.0)  # 100/s observed, halved
    assert limiter.learned == 50.0
    assert limiter.throttles == 1


def test_429s_of_requests_sent_under_an_older_rate_halve_it_once() -> None:
    limiter = RateLimiter(clock=lambda: 0.0)
    slots = free_sends(limiter, [i / 100 for i in range(10)])
    for s in slots:  # all ten were in flight when the first 429 came back
        assert limiter.on_throttled(s, now=0.1)
    assert limiter.rate == pytest.approx(50.0)
    assert limiter.throttles == 10
    newer = limiter.reserve(0.1)
    limiter.on_throttled(newer, now=0.15)
    assert limiter.rate == pytest.approx(25.0)


def test_slots_are_evenly_spaced_at_the_rate() -> None:
    limiter = RateLimiter(20.0, clock=lambda: 0.0)
    ats = [limiter.reserve(10.0).at for _ in range(4)]
    assert ats == pytest.approx([10.0, 10.05, 10.1, 10.15])
    assert limiter.reserve(11.0).at == 11.0  # idle time is not saved up as a burst


def test_success_raises_the_rate_additively() -> None:
    limiter = RateLimiter(clock=lambda: 0.0, increase=8.0)
    slot = free_sends(limiter, [0.0, 0.5])[-1]
    limiter.on_throttled(slot, now=1.0)  # 2 sends over 1 s: 2/s, halved to 1/s
    assert limiter.rate == pytest.approx(1.0)
    limiter.on_success(slot)
    assert limiter.rate == pytest.approx(9.0)  # + increase / rate
    r = 40.0
    limiter = RateLimiter(r, clock=lambda: 0.0, increase=8.0)
    limiter.on_throttled(limiter.reserve(0.0), now=0.0)
    assert limiter.rate == pytest.approx(20.0)
    limiter.on_success(limiter.reserve(0.0))
    assert limiter.rate == pytest.approx(20.4)
    for _ in range(400):  # r' = 8/r per success: r^2 grows by about 16 per success
        limiter.on_success(limiter.reserve(0.0))
    assert limiter.rate == pytest.approx(40.0)  # the cap, reached: 20^2 + 16 x 75 = 40^2


def test_never_above_the_cap() -> None:
    limiter = RateLimiter(10.0, clock=lambda: 0.0)
    assert limiter.rate == 10.0  # --rate is where it starts
    slot = limiter.reserve(0.0)
    for _ in range(100):
        limiter.on_success(slot)
    assert limiter.rate == 10.0
    limiter.on_throttled(slot, now=0.0)
    assert limiter.rate == 5.0
    for _ in range(1000):
        limiter.on_success(slot)
    assert limiter.rate == 10.0


def test_retry_after_holds_every_worker() -> None:
    limiter = RateLimiter(100.0, clock=lambda: 0.0)
    slot = limiter.reserve(0.0)
    limiter.on_throttled(slot, now=0.0, retry_after=2.0)
    assert limiter.reserve(0.5).at == pytest.approx(2.0)
    assert limiter.reserve(0.5).at == pytest.approx(2.02)  # then at the halved rate, 50/s


def test_at_the_floor_a_429_is_no_longer_adapting() -> None:
    limiter = RateLimiter(4.0, floor=1.0, clock=lambda: 0.0)
    now = 0.0
    answers = []
    for _ in range(4):
        slot = limiter.reserve(now)
        answers.append(limiter.on_throttled(slot, now=now))
        now += 10
    assert answers == [True, True, False, False]  # 4 -> 2 -> 1 (the floor): no longer adapting
    assert limiter.rate == 1.0


def test_a_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="> 0"):
        RateLimiter(0.0)


def test_wait_returns_none_once_stopped() -> None:
    stop = threading.Event()
    limiter = RateLimiter(1.0)
    assert limiter.wait(stop) is not None
    stop.set()
    assert limiter.wait(stop) is None


# -- under a quota -----------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [False, True], ids=["no-retry-after", "retry-after"])
def test_a_quota_fails_no_entry_and_429s_stay_few(
    tmp_path: Path, run, sim_env, retry_after: bool
) -> None:
    """More entries than the gateway's burst, 16 workers: the rate adapts, nothing fails."""
    plan = write_plan(tmp_path, cron_flows(8, 20))
    with Simulator(
        faults=Faults(latency=0.01), rate_limit=40, dialect=Dialect(retry_after=retry_after), accept_unknown_flows=True
    ) as s:
        r = run(
            "apply", str(plan), "--gateway", s.url, "--yes", "--format", "json",
            "--concurrency", "16", "--log-format", "json",
        )  # fmt: skip
        assert r.code == 0, r.err[-2000:]
        assert json.loads(r.out)["summary"] == {"triggered": 160}
        statuses = [t["status"] for t in s.triggers()]
    throttled = statuses.count(429)
    assert throttled > 0  # the quota really bit
    # Blind retries answered about one request in five with 429; adapting keeps it well
    # below (5% in bench/apply.py's quiet run; a loaded CI machine bunches requests more).
    assert throttled <= 0.15 * len(statuses), f"{throttled} of {len(statuses)} answered 429"
    assert statuses.count(0) == 160  # the service code of a success
    finished = [json.loads(line) for line in r.err.splitlines() if "apply finished" in line]
    assert finished[-1]["throttled"] == throttled
    assert finished[-1]["rate"] is not None


def test_the_learned_rate_is_in_the_json_summary(tmp_path, run, sim_env) -> None:
    import json

    from planrunner.sim import Simulator
    from testing import cron_flows, write_plan

    plan = write_plan(tmp_path, cron_flows(4, 10))
    with Simulator(rate_limit=20, accept_unknown_flows=True) as sim:
        r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--format", "json", "--concurrency", "8")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert set(doc["rate"]) == {"learned", "throttled"}
    assert doc["rate"]["throttled"] > 0 and doc["rate"]["learned"] > 0


def test_one_backoff_is_full_jitter_under_the_cap_and_never_sooner_than_retry_after() -> None:
    from planrunner.rate import backoff

    for tries in range(8):
        for _ in range(50):
            assert 0 <= backoff(tries, 0.2, 5.0) <= min(5.0, 0.2 * 2**tries)
    assert all(backoff(0, 0.2, 5.0, retry_after=3.0) >= 3.0 for _ in range(50))
    assert all(backoff(0, 0.2, 5.0, retry_after=60.0) == 5.0 for _ in range(50))  # capped
    assert backoff(3, 0.2, 0.0) == 0.0  # a zero cap (the tests' setting) never sleeps


def test_lookup_backoff_cap_is_a_setting_and_a_bad_one_is_a_usage_error() -> None:
    from planrunner import enos
    from planrunner.errors import UsageError

    assert enos.lookup_backoff_setting({}) == enos.LOOKUP_BACKOFF_CAP
    assert enos.lookup_backoff_setting({enos.LOOKUP_BACKOFF_ENV: "0"}) == 0.0
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(UsageError, match=enos.LOOKUP_BACKOFF_ENV):
            enos.lookup_backoff_setting({enos.LOOKUP_BACKOFF_ENV: bad})


# -- when sending more is pointless (contract section 11) ----------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_w4_only_429s_at_the_floor_for_the_quota_seconds_mean_the_quota_is_used_up() -> None:
    clock = FakeClock()
    watch = ratelib.Refusals(quota_seconds=60, not_allowed_seconds=30, clock=clock)
    assert watch.seen(429, at_floor=False) is None
    clock.now = 59.9
    assert watch.seen(429, at_floor=True) is None
    clock.now = 61
    assert watch.seen(429, at_floor=False) is None  # still adapting: not yet
    why = watch.seen(429, at_floor=True)
    assert why == ratelib.QUOTA_WHY.format(seconds=60)
    assert why.startswith("gateway quota exhausted: only HTTP 429 for 60 s at the lowest rate")


def test_w4_one_admitted_request_starts_the_quota_clock_again() -> None:
    clock = FakeClock()
    watch = ratelib.Refusals(quota_seconds=60, clock=clock)
    watch.seen(429, at_floor=True)
    clock.now = 50
    assert watch.seen(200, at_floor=False) is None  # a minute's quota cleared
    clock.now = 100
    assert watch.seen(429, at_floor=True) is None  # 0 s of 429s since
    clock.now = 161
    assert watch.seen(429, at_floor=True) is not None


@pytest.mark.parametrize(
    ("status", "meaning"), [(403, "IP address not allowed"), (503, "service not allowed to access")]
)
def test_w6_403_or_503_on_every_call_means_the_gateway_refuses_this_client(status: int, meaning: str) -> None:
    clock = FakeClock()
    watch = ratelib.Refusals(not_allowed_seconds=30, clock=clock)
    assert watch.seen(status, at_floor=False) is None
    clock.now = 10
    assert watch.seen(None, at_floor=False) is None  # a connection error breaks the run of refusals
    clock.now = 20
    assert watch.seen(status, at_floor=False) is None
    clock.now = 50
    assert watch.seen(status, at_floor=False) == (
        f"gateway refuses this client: HTTP {status} ({meaning}) on every call for 30 s"
    )

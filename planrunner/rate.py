"""The run's send rate to the gateway, shared by every worker of one apply (docs/apply.md).

With no rate known, requests go out freely. A gateway 429 halves the rate (the first time,
half the send rate observed just before it) and, when the gateway says ``Retry-After``,
holds every worker that long; each success raises the rate by a little (additive increase:
:data:`INCREASE` requests per second for every second of successes). ``--rate`` is the
starting rate and the ceiling: the rate never goes above it.

One 429 halves the rate once: requests sent under an older rate (they were already on
their way when it was lowered) are answered 429 too, and must not halve it again, so every
slot carries the *generation* of the rate it was paced by, and only a 429 on a slot of the
current generation lowers it. While the rate is above :data:`FLOOR`, a 429 is the rate
adapting, not a failure of the entry (:meth:`RateLimiter.throttled` says so): the engine
does not spend the entry's retries on it.

The arithmetic takes the time as an argument (:meth:`RateLimiter.reserve`), so tests drive
it with a fake clock; :meth:`RateLimiter.wait` is the blocking form the workers use. The
client (:mod:`planrunner.enos`) owns the one limiter of a run: every signed call takes a slot
(:meth:`RateLimiter.take`: the slot this thread already waited for, else a new one), and
:class:`Refusals` tells it when the gateway's answers say that sending more is pointless.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

INCREASE = 8.0  # requests per second gained per second of successes (additive increase)
DECREASE = 0.5  # the factor a 429 multiplies the rate by
FLOOR = 0.5  # requests per second; at the floor a 429 counts against the entry's retries
OBSERVED = 64  # sends remembered, while no rate is known, to measure the send rate
MIN_SPAN = 0.01  # seconds: the shortest span a send rate is measured over


@dataclass(frozen=True, slots=True)
class Slot:
    """A permission to send one request: when, and under which rate (its generation)."""

    at: float  # the clock reading the request may leave at
    generation: int  # how many times the rate had been lowered when the slot was given


class RateLimiter:
    """Paces the requests of one run; thread-safe, shared by all its workers.

    ``cap`` is ``--rate`` (None: no cap, and no rate until the first 429). ``clock`` is a
    monotonic clock in seconds.
    """

    def __init__(
        self,
        cap: float | None = None,
        *,
        increase: float = INCREASE,
        floor: float = FLOOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cap is not None and not cap > 0:
            raise ValueError(f"the rate cap must be > 0 requests per second, not {cap!r}")
        self.cap = cap
        self._rate = cap  # requests per second; None: send freely
        self._increase = increase
        self._floor = min(floor, cap) if cap is not None else floor
        self._clock = clock
        self._next = clock()  # the earliest time the next slot may be given
        self._generation = 0
        self._sent: deque[float] = deque(maxlen=OBSERVED)  # slot times while no rate is known
        self.throttles = 0  # 429s seen
        self._lock = threading.Lock()
        self._held = threading.local()  # the slot this thread waited for and has not used

    @property
    def rate(self) -> float | None:
        """The current rate in requests per second; None while none is known (sending freely)."""
        return self._rate

    @property
    def learned(self) -> float | None:
        """The rate the run learned from the gateway, rounded; None when it never had to."""
        if not self.throttles or self._rate is None:
            return None
        return round(self._rate, 1)

    # -- the arithmetic (given the time) -----------------------------------------------------

    def reserve(self, now: float) -> Slot:
        """The next slot: evenly spaced at the current rate, never before a Retry-After ends."""
        with self._lock:
            at = max(now, self._next)
            if self._rate is None:
                self._sent.append(at)
            else:
                self._next = at + 1.0 / self._rate
            return Slot(at, self._generation)

    def observed(self, now: float) -> float:
        """The send rate of the recent free sends, in requests per second (lock held)."""
        if not self._sent:
            return 1.0 / MIN_SPAN
        return len(self._sent) / max(now - self._sent[0], MIN_SPAN)

    def on_throttled(self, slot: Slot, now: float, retry_after: float | None = None) -> bool:
        """A 429 answered the request sent in ``slot``: lower the rate, hold for Retry-After.

        True while the rate is adapting (the 429 must not count against the entry's retries);
        False once the rate is at its floor and the gateway still refuses.
        """
        with self._lock:
            self.throttles += 1
            adapting = self._rate is None or self._rate > self._floor
            if slot.generation == self._generation:
                current = self._rate if self._rate is not None else self.observed(now)
                self._rate = max(self._floor, current * DECREASE)
                self._generation += 1
                self._sent.clear()
                self._next = max(self._next, now + 1.0 / self._rate)
            if retry_after is not None and retry_after > 0:
                self._next = max(self._next, now + retry_after)
            return adapting

    def on_success(self, slot: Slot) -> None:
        """The gateway admitted the request sent in ``slot``: raise the rate a little."""
        with self._lock:
            if self._rate is None:
                return
            raised = self._rate + self._increase / self._rate
            self._rate = min(raised, self.cap) if self.cap is not None else raised

    # -- for the workers ---------------------------------------------------------------------

    def wait(self, stop: threading.Event) -> Slot | None:
        """Block until the next slot and return it; None when ``stop`` was set meanwhile.

        The slot is held for this thread: its next :meth:`take` (the client's next call)
        uses it instead of waiting again, so a caller can wait, write what must be durable
        before the request leaves, then call."""
        slot = self._wait(stop)
        self._held.slot = slot
        return slot

    def take(self, stop: threading.Event) -> Slot | None:
        """The slot this thread waited for (:meth:`wait`) and has not used, else a new one."""
        slot: Slot | None = getattr(self._held, "slot", None)
        if slot is not None:
            self._held.slot = None
            return slot
        return self._wait(stop)

    def _wait(self, stop: threading.Event) -> Slot | None:
        if stop.is_set():
            return None
        now = self._clock()
        slot = self.reserve(now)
        if slot.at > now and stop.wait(slot.at - now):
            return None
        return None if stop.is_set() else slot

    def throttled(self, slot: Slot, retry_after: float | None = None) -> bool:
        """:meth:`on_throttled` now."""
        return self.on_throttled(slot, self._clock(), retry_after)

    def succeeded(self, slot: Slot) -> None:
        """:meth:`on_success`."""
        self.on_success(slot)


QUOTA_SECONDS = 60.0  # only 429s at the floor rate this long: the quota is used up
NOT_ALLOWED_SECONDS = 30.0  # only 403s or 503s this long: the gateway refuses this client
QUOTA_WHY = (
    "gateway quota exhausted: only HTTP 429 for {seconds:g} s at the lowest rate; apply again "
    "after the quota window (minute, hour, day or month)"
)
NOT_ALLOWED_WHY = "gateway refuses this client: HTTP {status} ({meaning}) on every call for {seconds:g} s"
NOT_ALLOWED_MEANING = {403: "IP address not allowed", 503: "service not allowed to access"}


class Refusals:
    """Tells when the gateway's answers say that sending more is pointless (contract
    section 11): only 429s for ``quota_seconds`` while the rate is at its floor (a quota of
    the hour, day or month is used up; a minute's quota clears within a minute), or only
    403s/503s for ``not_allowed_seconds`` (this IP address or app is not let in). Thread-safe.
    """

    def __init__(
        self,
        quota_seconds: float = QUOTA_SECONDS,
        not_allowed_seconds: float = NOT_ALLOWED_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quota_seconds = quota_seconds
        self.not_allowed_seconds = not_allowed_seconds
        self._clock = clock
        self._throttled_since: float | None = None  # the first of the 429s in a row
        self._refused_since: float | None = None  # the first of the 403s/503s in a row
        self._lock = threading.Lock()

    def seen(self, http_status: int | None, *, at_floor: bool) -> str | None:
        """An answer came (``http_status`` None: no HTTP answer); the one-line reason to stop
        sending, or None. ``at_floor``: the limiter's rate is at its floor."""
        now = self._clock()
        with self._lock:
            if http_status != 429:
                self._throttled_since = None
            if http_status not in NOT_ALLOWED_MEANING:
                self._refused_since = None
            if http_status == 429:
                if self._throttled_since is None:
                    self._throttled_since = now
                since = self._throttled_since
                if at_floor and now - since >= self.quota_seconds:
                    return QUOTA_WHY.format(seconds=self.quota_seconds)
            elif http_status in NOT_ALLOWED_MEANING:
                if self._refused_since is None:
                    self._refused_since = now
                since = self._refused_since
                if now - since >= self.not_allowed_seconds:
                    return NOT_ALLOWED_WHY.format(
                        status=http_status,
                        meaning=NOT_ALLOWED_MEANING[http_status],
                        seconds=self.not_allowed_seconds,
                    )
            return None


def backoff(tries: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before try ``tries + 1``: exponential backoff with full jitter
    (uniform in ``[0, min(cap, base * 2**tries)]``), never sooner than a ``Retry-After``
    asked for, and never longer than ``cap``. The one backoff of sends, lookups and cancels."""
    delay = random.uniform(0, min(cap, base * 2**tries))
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay

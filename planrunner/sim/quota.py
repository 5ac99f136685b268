"""The gateway's quotas: N calls per second, minute, hour or day, several windows at once.

Like the vendor's API proxy quotas, every signed call counts (triggers, lookups, Get Flow,
Cancel, the time calls, task logs), in fixed windows aligned to the epoch; past N in a
window every call is answered HTTP 429 (no Retry-After) until that window ends. A call
answered 429 counts in no window: it never reached an API under the proxy, so it cannot
use up a longer window while a shorter one refuses.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

WINDOWS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}  # seconds
_SPEC = re.compile(r"(\d+)\s*/\s*(second|minute|hour|day)")


@dataclass(frozen=True, slots=True)
class Quota:
    """``calls`` per window of ``seconds`` (aligned to the epoch)."""

    calls: int
    seconds: int

    @classmethod
    def parse(cls, spec: str) -> Quota:
        """``N/second``, ``N/minute``, ``N/hour`` or ``N/day`` (N >= 1); ValueError else."""
        m = _SPEC.fullmatch(spec.strip())
        if m is None or int(m[1]) < 1:
            raise ValueError(
                f"bad quota {spec!r} (want N/second, N/minute, N/hour or N/day, N >= 1)"
            )
        return cls(int(m[1]), WINDOWS[m[2]])


class Quotas:
    """Counts signed calls against every quota at once (thread-safe)."""

    def __init__(self, quotas: Iterable[Quota], clock: Callable[[], float] = time.time) -> None:
        self.quotas = tuple(quotas)
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[Quota, tuple[int, int]] = {}  # quota -> (window index, calls)
        self.refused = 0  # calls answered 429 by a quota

    def admit(self) -> bool:
        """Count one call and say whether every quota lets it through."""
        if not self.quotas:
            return True
        now = self._clock()
        with self._lock:
            counts = {}
            for q in self.quotas:
                window = int(now // q.seconds)
                seen, calls = self._counts.get(q, (window, 0))
                calls = calls if seen == window else 0
                if calls >= q.calls:
                    self.refused += 1
                    return False
                counts[q] = (window, calls + 1)
            self._counts.update(counts)
            return True

"""Fault injection (:class:`Faults`) and the readings of undocumented points (:class:`Dialect`).

A :class:`Dialect` chooses, for every point the vendor does not document, which plausible
answer the simulator gives; the defaults are the documented service plus the most likely
reading. :class:`Faults` injects failures on triggers and lookups, each as a seeded rate or
a schedule of request numbers, so runs repeat.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import tzinfo

from planrunner import protocol

# -- dialects ------------------------------------------------------------------------------

ID_ZONES = ("utc", "server")
NOT_FOUND_FORMS = ("62102", "null", "empty")
DUPLICATE_RULES = ("minute-key", "wall-clock", "none")
AUTH_FAILURE_FORMS = ("http", "body")
PAGE_ORIGINS = (0, 1)
SEARCH_COUNTS = ("total", "page")
DEFAULT_DUPLICATE_WINDOW = 60.0  # seconds of wall clock, for duplicate="wall-clock"


def _allowed(name: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed)
        raise ValueError(f"dialect {name} must be one of {shown}, not {value!r}")


@dataclass(frozen=True, slots=True)
class Dialect:
    """How the simulator answers where the vendor's documentation is silent.

    ``api``: ``v2.0`` or ``v2.1`` (envelope key, success message, paths, first page).
    ``server_zone``: what Get Time Zone says and the zone of every time string.
    ``id_zone``: the zone of the instance id digits, ``utc`` or ``server``.
    ``not_found``: Get (and Cancel) of a missing instance: ``62102``, ``null`` (code 0, data
    null) or ``empty`` (code 0, data {}).
    ``duplicate``: a second trigger of a flow: ``minute-key`` (refused while an instance with
    the derived id exists), ``wall-clock`` (refused within ``duplicate_window`` seconds of
    that flow's previous accepted trigger) or ``none`` (never refused).
    ``auth_failure``: ``http`` (HTTP 401, JSON body) or ``body`` (HTTP 200, legacy bodies).
    ``page_origin``: Search's first ``pageNo``; None takes the API version's.
    ``search_count``: Search ``count`` is the ``total`` or the ``page`` length.
    ``retry_after``: send ``Retry-After`` with 429 and 503 (not documented, so off).
    """

    api: str = protocol.DEFAULT_API.name
    server_zone: str = "GMT+8"
    id_zone: str = "utc"
    not_found: str = "62102"
    duplicate: str = "minute-key"
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW
    auth_failure: str = "http"
    page_origin: int | None = None
    search_count: str = "total"
    retry_after: bool = False

    def __post_init__(self) -> None:
        _allowed("api", self.api, tuple(protocol.APIS))
        try:
            protocol.server_zone(self.server_zone)
        except ValueError as e:
            raise ValueError(f"dialect server_zone: {e}") from None
        _allowed("id_zone", self.id_zone, ID_ZONES)
        _allowed("not_found", self.not_found, NOT_FOUND_FORMS)
        _allowed("duplicate", self.duplicate, DUPLICATE_RULES)
        window = self.duplicate_window
        if isinstance(window, bool) or not isinstance(window, int | float):
            raise ValueError(f"dialect duplicate_window must be a number, not {window!r}")
        if not 0 <= window < math.inf:
            raise ValueError(f"dialect duplicate_window must be >= 0 seconds, not {window!r}")
        _allowed("auth_failure", self.auth_failure, AUTH_FAILURE_FORMS)
        if self.page_origin is not None:
            _allowed("page_origin", self.page_origin, PAGE_ORIGINS)
        _allowed("search_count", self.search_count, SEARCH_COUNTS)
        _allowed("retry_after", self.retry_after, (True, False))

    @property
    def version(self) -> protocol.Api:
        """The API version spoken."""
        return protocol.api(self.api)

    @property
    def zone(self) -> tzinfo:
        """The server zone, as a tzinfo."""
        return protocol.server_zone(self.server_zone)

    @property
    def id_tz(self) -> tzinfo:
        """The zone of the instance id digits."""
        return protocol.server_zone("UTC") if self.id_zone == "utc" else self.zone

    @property
    def first_page(self) -> int:
        """Search's first ``pageNo``."""
        return self.version.first_page if self.page_origin is None else self.page_origin


# -- faults --------------------------------------------------------------------------------

# Trigger faults. "62109" and "503" answer before anything is created; the "-after-create"
# kinds and "malformed" create the instance first.
TRIGGER_FAULTS = (
    "62109",
    "62109-after-create",
    "503",
    "504-after-create",
    "drop-after-create",
    "malformed",
)
AFTER_CREATE_FAULTS = frozenset(
    {"62109-after-create", "504-after-create", "drop-after-create", "malformed"}
)
# Lookup faults, on Get and Search Flow Instances (schedules count lookups, not triggers).
LOOKUP_FAULTS = ("lookup-503", "lookup-62109", "lookup-drop")
HTTP_FAULT_PREFIX = "http-"
# The gateway's own answers, injected before the service sees the trigger (nothing created).
GATEWAY_STATUSES = (400, 401, 403, 413, 429, 500, 502, 503, 504)


def gateway_status(kind: str) -> int | None:
    """The HTTP status of an ``http-NNN`` fault, or None for another kind."""
    if not kind.startswith(HTTP_FAULT_PREFIX):
        return None
    digits = kind.removeprefix(HTTP_FAULT_PREFIX)
    if not digits.isdigit() or int(digits) not in GATEWAY_STATUSES:
        return None
    return int(digits)


def _known(kind: str) -> bool:
    return kind in TRIGGER_FAULTS or kind in LOOKUP_FAULTS or gateway_status(kind) is not None


@dataclass
class Faults:
    """Fault injection: each kind a rate (0..1, seeded) or a schedule of request numbers.

    Trigger kinds (and ``http-NNN``) count trigger requests, 1-based; lookup kinds count Get
    and Search requests. ``latency`` (seconds, >= 0) delays every trigger answer.
    """

    rates: dict[str, float] = field(default_factory=dict)
    schedule: dict[str, set[int]] = field(default_factory=dict)
    latency: float = 0.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for kind in (*self.rates, *self.schedule):
            if not _known(kind):
                known = ", ".join((*TRIGGER_FAULTS, *LOOKUP_FAULTS, "http-NNN"))
                raise ValueError(
                    f"unknown fault {kind!r} (known: {known}; NNN one of "
                    f"{', '.join(str(s) for s in GATEWAY_STATUSES)})"
                )
        for kind, rate in self.rates.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"fault rate must be within 0..1: {kind}={rate}")
        for kind, numbers in self.schedule.items():
            if any(n < 1 for n in numbers):
                raise ValueError(f"fault schedule numbers start at 1: {kind}@{numbers}")
        if not 0 <= self.latency < math.inf:
            raise ValueError(f"latency must be >= 0 seconds, not {self.latency}")
        self._rng = random.Random(self.seed)

    @classmethod
    def parse(cls, specs: list[str], latency: float = 0.0, seed: int = 0) -> Faults:
        """Read ``KIND=RATE`` (e.g. ``503=0.1``) and ``KIND@N,M`` (the Nth and Mth requests)."""
        rates: dict[str, float] = {}
        schedule: dict[str, set[int]] = {}
        for spec in specs:
            if "@" in spec:
                kind, _, nums = spec.partition("@")
                try:
                    schedule.setdefault(kind, set()).update(int(n) for n in nums.split(",") if n)
                except ValueError:
                    raise ValueError(f"bad fault schedule {spec!r} (want KIND@N,M)") from None
            else:
                kind, sep, rate = spec.partition("=")
                try:
                    if not sep:
                        raise ValueError
                    rates[kind] = float(rate)
                except ValueError:
                    raise ValueError(f"bad fault {spec!r} (want KIND=RATE or KIND@N,M)") from None
        return cls(rates, schedule, latency, seed)

    def _pick(self, number: int, lookup: bool) -> str | None:
        for kind, numbers in self.schedule.items():
            if (kind in LOOKUP_FAULTS) == lookup and number in numbers:
                return kind
        for kind, rate in self.rates.items():
            if (kind in LOOKUP_FAULTS) == lookup and rate and self._rng.random() < rate:
                return kind
        return None

    def pick(self, number: int) -> str | None:
        """The fault for trigger request ``number`` (1-based), if any."""
        return self._pick(number, lookup=False)

    def pick_lookup(self, number: int) -> str | None:
        """The fault for Get/Search request ``number`` (1-based), if any."""
        return self._pick(number, lookup=True)

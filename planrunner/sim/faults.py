"""Fault injection (:class:`Faults`) and the readings of undocumented points (:class:`Dialect`).

A :class:`Dialect` chooses, for every point the vendor does not document, which plausible
answer the simulator gives; the defaults are the documented service plus the most likely
reading. :class:`Faults` injects failures on triggers and lookups, each as a seeded rate or
a schedule of request numbers, so runs repeat.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from planrunner import protocol

# -- dialects ------------------------------------------------------------------------------

ID_ZONES = ("utc", "server")
NOT_FOUND_FORMS = ("62102", "null", "empty")
DUPLICATE_RULES = ("minute-key", "wall-clock", "none")
AUTH_FAILURE_FORMS = ("http", "body")
PAGE_ORIGINS = (0, 1)
SEARCH_COUNTS = ("total", "page")
PARAMETER_FORMS = ("list", "map", "string")
INSTANCE_DATA_FORMS = ("object", "list")
LOG_KEEPS = ("start", "end")
DEFAULT_DUPLICATE_WINDOW = 60.0  # seconds of wall clock, for duplicate="wall-clock"
# What --hostile puts into every string the service returns (then the token and the
# secret, then HOSTILE_PADDING characters): terminal escapes, GitHub workflow commands at
# the start of a line, CR/LF.
HOSTILE_TEXT = "\x1b[2J\x1b[31m\n::error file=x::INJECTED\n::add-mask::x\r\n"
HOSTILE_PADDING = 100_000


def hostile_text(token: str, secret: str, *, padding: int = HOSTILE_PADDING) -> str:
    """The injection --hostile appends: escapes, workflow commands, the token, the secret,
    and ``padding`` characters."""
    return f"{HOSTILE_TEXT}{token} {secret} {'Z' * padding}"


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
    ``server_zone_dst``: an IANA zone with daylight saving (``America/New_York``): every time
    string is written in it, zone-less, so the repeated hour is ambiguous, while Get Time
    Zone reports its current offset as ``GMT-5``/``GMT-4``, as the vendor's ``GMT+N`` would.
    ``parameters``: the form of Update And Trigger's ``parameters`` the service accepts:
    ``list`` (``[{"key", "value"}]``, the vendor's sample), ``map`` (an object, the page's
    table) or ``string`` (a JSON string of the list, the Java sample); another form is
    refused with 62102 "Incorrect parameter", nothing created.
    ``instance_data``: Get Flow Instance's ``data`` as the ``object`` (samples) or a
    one-element ``list`` (the newest page's ``List<JSONObject>``).
    ``log_keep``: which end of a task log ``maxLength`` keeps (the page says only "the
    maximum length of the queried log"): ``start`` or ``end``.
    ``hostile``: every string the service returns (instance ids, statuses, flow names,
    messages, the time-zone name) carries :data:`HOSTILE_TEXT` plus the caller's token and
    the app secret (see :func:`hostile_text`).
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
    server_zone_dst: str | None = None
    parameters: str = "list"
    instance_data: str = "object"
    log_keep: str = "start"
    hostile: bool = False

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
        _allowed("hostile", self.hostile, (True, False))
        _allowed("parameters", self.parameters, PARAMETER_FORMS)
        _allowed("instance_data", self.instance_data, INSTANCE_DATA_FORMS)
        _allowed("log_keep", self.log_keep, LOG_KEEPS)
        if self.server_zone_dst is not None:
            try:
                zone = protocol.server_zone(self.server_zone_dst)
            except ValueError as e:
                raise ValueError(f"dialect server_zone_dst: {e}") from None
            if not isinstance(zone, ZoneInfo):
                raise ValueError(
                    f"dialect server_zone_dst must be an IANA name such as America/New_York, "
                    f"not {self.server_zone_dst!r}"
                )

    @property
    def version(self) -> protocol.Api:
        """The API version spoken."""
        return protocol.api(self.api)

    @property
    def zone(self) -> tzinfo:
        """The zone of the service's time strings, as a tzinfo."""
        return protocol.server_zone(self.server_zone_dst or self.server_zone)

    def zone_name(self, now: float) -> str:
        """What Get Time Zone says at ``now``: the ``--server-zone`` name, or for
        ``server_zone_dst`` that zone's offset at ``now`` as ``GMT+N`` / ``GMT-N:MM``."""
        if self.server_zone_dst is None:
            return self.server_zone
        offset = datetime.fromtimestamp(now, self.zone).utcoffset() or timedelta()
        minutes = int(offset.total_seconds()) // 60
        sign, minutes = ("-", -minutes) if minutes < 0 else ("+", minutes)
        hours, rest = divmod(minutes, 60)
        return f"GMT{sign}{hours}" + (f":{rest:02d}" if rest else "")

    @property
    def id_tz(self) -> tzinfo:
        """The zone of the instance id digits."""
        return protocol.server_zone("UTC") if self.id_zone == "utc" else self.zone

    @property
    def first_page(self) -> int:
        """Search's first ``pageNo``."""
        return self.version.first_page if self.page_origin is None else self.page_origin


# -- faults --------------------------------------------------------------------------------

# Trigger faults. "62109", "62102" and "503" answer before anything is created; the
# "-after-create" kinds and "malformed" create the instance first; the "-then-create" kinds
# answer at once (a gateway that gave up) and the backend creates the instance
# ``Faults.backend_delay`` seconds later. "5NN-after-create" takes any 5xx status.
TRIGGER_FAULTS = (
    "62109",
    "62102",
    "62109-after-create",
    "503",
    "504-after-create",
    "5NN-after-create",
    "drop-after-create",
    "malformed",
    "504-then-create",
    "drop-then-create",
)
AFTER_CREATE_FAULTS = frozenset(
    {"62109-after-create", "504-after-create", "drop-after-create", "malformed"}
)
THEN_CREATE_FAULTS = frozenset({"504-then-create", "drop-then-create"})
DEFAULT_BACKEND_DELAY = 2.0  # seconds from a -then-create answer to the instance
_STATUS_AFTER_CREATE = re.compile(r"(5\d\d)-after-create")
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


def status_after_create(kind: str) -> int | None:
    """The HTTP status of a ``5NN-after-create`` fault (500..599), or None for another kind."""
    m = _STATUS_AFTER_CREATE.fullmatch(kind)
    return int(m[1]) if m else None


def creates_first(kind: str | None) -> bool:
    """Whether fault ``kind`` lets the service create the instance before it strikes."""
    return kind is not None and (kind in AFTER_CREATE_FAULTS or status_after_create(kind) is not None)


def _known(kind: str) -> bool:
    return (
        (kind in TRIGGER_FAULTS and kind != "5NN-after-create")
        or kind in LOOKUP_FAULTS
        or gateway_status(kind) is not None
        or status_after_create(kind) is not None
    )


@dataclass
class Faults:
    """Fault injection: each kind a rate (0..1, seeded) or a schedule of request numbers.

    Trigger kinds (and ``http-NNN``) count trigger requests, 1-based; lookup kinds count Get
    and Search requests. ``latency`` (seconds, >= 0) delays every trigger answer.
    ``processing`` (seconds, >= 0): the service works this long on every trigger it accepts
    and creates the instance when it is done, whether or not the client still waits (a
    client whose read timeout is shorter has gone: the log says ``answered: false``).
    ``backend_delay`` (seconds, >= 0): how long after a ``-then-create`` answer the backend
    creates the instance.
    """

    rates: dict[str, float] = field(default_factory=dict)
    schedule: dict[str, set[int]] = field(default_factory=dict)
    latency: float = 0.0
    seed: int = 0
    processing: float = 0.0
    backend_delay: float = DEFAULT_BACKEND_DELAY
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for kind in (*self.rates, *self.schedule):
            if not _known(kind):
                known = ", ".join((*TRIGGER_FAULTS, *LOOKUP_FAULTS, "http-NNN"))
                raise ValueError(
                    f"unknown fault {kind!r} (known: {known}; 5NN any of 500..599; NNN one "
                    f"of {', '.join(str(s) for s in GATEWAY_STATUSES)})"
                )
        for kind, rate in self.rates.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"fault rate must be within 0..1: {kind}={rate}")
        for kind, numbers in self.schedule.items():
            if any(n < 1 for n in numbers):
                raise ValueError(f"fault schedule numbers start at 1: {kind}@{numbers}")
        for name in ("latency", "processing", "backend_delay"):
            value = getattr(self, name)
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be >= 0 seconds, not {value}")
        self._rng = random.Random(self.seed)

    @classmethod
    def parse(
        cls,
        specs: list[str],
        latency: float = 0.0,
        seed: int = 0,
        *,
        processing: float = 0.0,
        backend_delay: float = DEFAULT_BACKEND_DELAY,
    ) -> Faults:
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
        return cls(rates, schedule, latency, seed, processing, backend_delay)

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

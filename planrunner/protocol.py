"""The wire protocol of the EnOS API gateway and Data Flow batch service, as documented.

One module, standard library only, imported by the client (:mod:`planrunner.enos`) and the
simulator (:mod:`planrunner.sim`), so both speak the same bytes: API versions and paths,
the envelope reader, status codes, instance statuses, the derived instance id, the
service's zone-less time strings, the token and signature digests, and the gateway URL
rule. Nothing here sends a request.

What the vendor documents and what is only inferred is laid out in docs/protocol.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# -- API versions and paths ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Api:
    """One version of the Data Flow batch service API."""

    name: str  # "v2.0" or "v2.1"
    prefix: str  # path prefix under the gateway
    code_key: str  # the envelope's status key: "status" (v2.0) or "code" (v2.1)
    ok_msg: str  # the success message the service writes (never relied upon)
    first_page: int  # Search pagination: pageNo of the first page

    @property
    def flows(self) -> str:
        """Trigger Flow and Get Flow."""
        return self.prefix + "/flows"

    @property
    def instances(self) -> str:
        """Get, Search and Cancel Flow Instances."""
        return self.prefix + "/flowInstances"

    @property
    def time(self) -> str:
        """Get Time Zone and Get Current Time."""
        return self.prefix + "/time"

    @property
    def task_instances(self) -> str:
        """Get Task Instance Log."""
        return self.prefix + "/taskInstances"


V20 = Api("v2.0", "/dataflow-batch-service/v2.0", "status", " Success", 0)
V21 = Api("v2.1", "/batch-processing-service/v2.1", "code", "OK", 1)
APIS: dict[str, Api] = {V20.name: V20, V21.name: V21}
DEFAULT_API = V20

TOKEN_GET_PATH = "/apim-token-service/v2.0/token/get"  # noqa: S105 - a URL path
TOKEN_REFRESH_PATH = "/apim-token-service/v2.0/token/refresh"  # noqa: S105 - a URL path
SIM_TRIGGERS_PATH = "/__sim__/triggers"  # the simulator's own record of every trigger


def api(name: str) -> Api:
    """The API version called ``name`` (``v2.0`` or ``v2.1``)."""
    try:
        return APIS[name]
    except KeyError:
        raise ValueError(f'unknown API version "{name}" (known: v2.0, v2.1)') from None


# -- codes ---------------------------------------------------------------------------------

OK = 0
USER_ORG_MISMATCH = 62101
BAD_PARAMETER_OR_DUPLICATE = 62102  # documented as a bad parameter; inferred "same minute"
NO_PRIVILEGE = 62103
NO_TASK = 62104
LOCKED = 62105
SERVER_ERROR = 62109
PERMANENT_CODES = frozenset({USER_ORG_MISMATCH, NO_PRIVILEGE, NO_TASK, LOCKED})
PERMANENT_HTTP = frozenset({400, 403, 413})

TOKEN_ERRORS = {
    1001: "repeated encryption (timestamp reused)",
    1002: "appKey does not exist",
    1003: "encryption not valid",
    1004: "invalid parameter",
    1005: "token service internal error",
    1202: "empty parameter",
    1203: "token expired",
    1204: "token refresh failed",
}
TOKEN_REPEATED = 1001
# Body codes that older gateway generations used for auth failures (401, 497 signature or
# timestamp, 498 permission), and the key of the legacy scheme's own status.
AUTH_BODY_CODES = frozenset({401, 497, 498})
LEGACY_AUTH_KEY = "apim_status"

# Flow instance statuses.
FAIL, INIT, SUCCESS, RUNNING, SUSPEND, INTERNAL_ERROR = -1, 0, 1, 2, 3, 4
WAIT, READY, TIMEOUT, CANCEL, RERUN, SKIP = 5, 6, 7, 8, 9, 10
STATUS_NAMES = {
    FAIL: "FAIL",
    INIT: "INIT",
    SUCCESS: "SUCCESS",
    RUNNING: "RUNNING",
    SUSPEND: "SUSPEND",
    INTERNAL_ERROR: "INTERNAL_ERROR",
    WAIT: "WAIT",
    READY: "READY",
    TIMEOUT: "TIMEOUT",
    CANCEL: "CANCEL",
    RERUN: "RERUN",
    SKIP: "SKIP",
}
FINAL_STATUSES = frozenset({FAIL, SUCCESS, INTERNAL_ERROR, TIMEOUT, CANCEL, SKIP})
FAILED_STATUSES = frozenset({FAIL, INTERNAL_ERROR, TIMEOUT})  # ended, and not by a cancel
SUCCEEDED_STATUSES = frozenset({SUCCESS, SKIP})
CANCELLABLE_STATUSES = frozenset({INIT, WAIT, READY, RUNNING, SUSPEND})
ALL_STATUSES = ",".join(str(s) for s in sorted(STATUS_NAMES))  # "-1,0,1,...,10"

# Scheduling types, in the order planrunner searches them: triggered instances are
# "manual" (0) by the most likely reading, "temporary" (2) by another, periodic (1) last.
TYPE_MANUAL, TYPE_PERIODIC, TYPE_TEMPORARY = 0, 1, 2
SEARCH_TYPES = (TYPE_MANUAL, TYPE_TEMPORARY, TYPE_PERIODIC)
PAGE_SIZE = 100
MINUTE_MS = 60_000


# -- envelopes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A service answer's envelope: ``code`` is None when the body has neither key."""

    code: int | None
    msg: str
    data: Any
    auth_failure: bool = False  # the body says the token or signature was refused


def read_envelope(body: object) -> Envelope | None:
    """The envelope of a decoded JSON body, or None when it is not one.

    ``status`` (v2.0) and ``code`` (v2.1) are both read, whichever is present: the check is
    on the code, never on ``msg``. A body with neither but with ``apim_status``, or whose
    code is 401, 497 or 498, is an auth failure.
    """
    if not isinstance(body, dict):
        return None
    raw = body.get("status", body.get("code"))
    msg = body.get("msg", body.get("message", ""))
    msg = msg.strip() if isinstance(msg, str) else ""
    if raw is None:
        if LEGACY_AUTH_KEY in body:
            return Envelope(None, msg or f"auth failure ({LEGACY_AUTH_KEY})", None, True)
        return None
    code = _code(raw)
    if code is None:
        return None
    auth = code in AUTH_BODY_CODES or code in TOKEN_ERRORS
    return Envelope(code, msg, body.get("data"), auth)


CODE_LIMIT = 2**31  # a service code outside +-2^31 is not a code: the body is not an envelope


def _code(raw: object) -> int | None:
    """A service code from an int, an integral float or a string of digits; None otherwise
    (booleans, infinities, NaN, codes past 64 bits, anything else)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float):
        if not math.isfinite(raw) or not raw.is_integer():
            return None
        raw = int(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if not re.fullmatch(r"-?[0-9]{1,10}", text):
            return None
        raw = int(text)
    if not isinstance(raw, int) or not -CODE_LIMIT < raw < CODE_LIMIT:
        return None
    return raw


def envelope(version: Api, code: int, msg: str, data: Any = None) -> dict[str, Any]:
    """A service answer in ``version``'s shape (the simulator's writer)."""
    return {version.code_key: code, "msg": msg, "data": data}


# -- instance ids and the service's time strings -------------------------------------------

ZONE_NAME_LIMIT = 64  # characters: no real zone name is longer
_GMT = re.compile(r"(?:GMT|UTC)\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?")


def server_zone(name: str) -> tzinfo:
    """The zone named by Get Time Zone or ``target.serverTimezone``.

    ``GMT+8``, ``GMT-5``, ``GMT+5:30``, ``GMT+0530``, ``UTC``, ``GMT`` are fixed offsets
    (``GMT+8`` means +08:00, the everyday reading, not the inverted POSIX one); anything else
    must be an IANA name.
    """
    text = name.strip()
    if len(text) > ZONE_NAME_LIMIT:
        raise ValueError("unknown time zone (a name longer than 64 characters)")
    if text.upper() in ("UTC", "GMT", "Z", "UTC+0", "GMT+0", "GMT-0"):
        return UTC
    m = _GMT.fullmatch(text.upper())
    if m:
        hours, minutes = int(m[2]), int(m[3] or 0)
        if hours > 14 or minutes > 59:
            raise ValueError(f'time zone "{name}" is out of range')
        delta = timedelta(hours=hours, minutes=minutes)
        return timezone(-delta if m[1] == "-" else delta, text)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f'unknown time zone "{name}" (want GMT+N or an IANA name)') from None


def zone_has_dst(name: str, years: Iterable[int] | None = None) -> bool:
    """Whether the zone ``name`` (as :func:`server_zone` reads it) changes its UTC offset
    during ``years`` (default: the years around now): daylight saving time, or a change of
    standard time, so some wall hour is repeated and the service's zone-less time strings
    in it name two instants.

    ``GMT+N`` and ``UTC`` never do. Raises ValueError for a name :func:`server_zone` refuses.
    """
    zone = server_zone(name)
    if not isinstance(zone, ZoneInfo):
        return False
    if years is None:
        now = datetime.now(UTC).year
        years = range(now - 1, now + 2)
    for y in years:
        offsets = {datetime(y, m, 15, 12, tzinfo=UTC).astimezone(zone).utcoffset() for m in range(1, 13)}
        offsets.add(datetime(y, 12, 31, 23, 59, tzinfo=zone).utcoffset())
        if len(offsets) > 1:
            return True
    return False


def instance_id(flow_id: int, trigger_time: int, zone: tzinfo = UTC) -> str:
    """``{flowId}-{yyyyMMddHHmm}00``: the trigger time's minute, in ``zone``'s digits."""
    dt = datetime.fromtimestamp(trigger_time // 1000, zone)
    return f"{flow_id}-{dt:%Y%m%d%H%M}00"


_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S")


def parse_time(value: object, zone: tzinfo) -> int | None:
    """Epoch ms of a time the service wrote, or None when it cannot be read.

    An integer is epoch milliseconds; a string ``yyyy-MM-dd HH:mm:ss`` (optionally with
    fractional seconds) is wall time in the server's ``zone``. Never assumes UTC.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    for fmt in _TIME_FORMATS:
        try:
            wall = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return int(wall.replace(tzinfo=zone).timestamp() * 1000)
    return None


def parse_times(value: object, zone: tzinfo) -> tuple[int, ...]:
    """Every instant a time the service wrote can name: one, or two for a wall time in the
    hour a daylight-saving zone repeats (both folds); none when it cannot be read."""
    first = parse_time(value, zone)
    if first is None:
        return ()
    if not isinstance(value, str) or value.strip().isdigit():
        return (first,)
    wall = datetime.fromtimestamp(first / 1000, zone).replace(tzinfo=None)
    later = int(wall.replace(tzinfo=zone, fold=1).timestamp() * 1000)
    if later == first or datetime.fromtimestamp(later / 1000, zone).replace(tzinfo=None) != wall:
        return (first,)  # not ambiguous (or a wall time in a gap, which only one fold reads)
    return (first, later)


def format_time(ms: int, zone: tzinfo, *, fraction: bool = False) -> str:
    """``yyyy-MM-dd HH:mm:ss`` (or ``...ss.S``) of ``ms`` in ``zone``: the service's style."""
    dt = datetime.fromtimestamp(ms / 1000, zone)
    text = f"{dt:%Y-%m-%d %H:%M:%S}"
    return f"{text}.{dt.microsecond // 100_000}" if fraction else text


def same_trigger(
    inst: Mapping[str, Any],
    flow_id: int,
    trigger_time: int,
    zone: tzinfo,
    *,
    ambiguous: bool = True,
) -> bool:
    """Whether ``inst`` is the instance of ``flow_id`` at ``trigger_time``, to the second.

    The instance's ``triggerTime`` is read in the server's zone; a wall time the zone
    repeats matches either of its instants, unless ``ambiguous`` is False (then it never
    matches: Get by a derived id cannot tell the two hours' instances apart, Search's
    window can). An instance whose time cannot be read is never taken.
    """
    if int_of(inst.get("flowId")) != flow_id:
        return False
    times = parse_times(inst.get("triggerTime"), zone)
    if len(times) > 1 and not ambiguous:
        return False
    return any(tt // 1000 == trigger_time // 1000 for tt in times)


def search_body(
    version: Api,
    from_ms: int,
    to_ms: int,
    *,
    type_: int,
    page_no: int,
    page_size: int = PAGE_SIZE,
    expression: str = "",
    owner: str = "",
) -> dict[str, Any]:
    """The Search Flow Instances body: every status, half-open window ``[from, to)``."""
    del version  # the body is the same in both versions; only pageNo's origin differs
    return {
        "type": type_,
        "owner": owner,
        "expression": expression,
        "fromTriggerTime": from_ms,
        "toTriggerTime": to_ms,
        "status": ALL_STATUSES,
        "pagination": {"pageNo": page_no, "pageSize": page_size},
    }


_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:(\d{2})(?:\.\d+)?")


def same_second(inst: Mapping[str, Any], flow_id: int, trigger_time: int) -> bool:
    """Whether ``inst``, a result of a Search over ``trigger_time``'s minute, is the instance
    of ``flow_id`` at ``trigger_time``: the same flowId and the same seconds within the minute.

    The window fixed the minute by epoch ms, so only the seconds of the zone-less
    ``triggerTime`` are read: a daylight-saving server zone reported as a fixed ``GMT+N``
    cannot make a match fail. A time without seconds to read is never taken.
    """
    if int_of(inst.get("flowId")) != flow_id:
        return False
    raw = inst.get("triggerTime")
    want = trigger_time // 1000 % 60
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw // 1000 % 60 == want
    text = raw.strip() if isinstance(raw, str) else ""
    m = _SECONDS.fullmatch(text)
    return int(m[1]) == want if m else text.isdigit() and int(text) // 1000 % 60 == want


# -- flows and their tasks -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowInfo:
    """What Get Flow says of a flow, as planrunner uses it."""

    flow_id: int
    name: str
    owners: tuple[str, ...]  # usernames, from ``owner`` (";alice;bob;"): never a userId
    locked: bool
    user_locked: bool
    active: int | None  # 0 paused, 1 scheduled
    type: int | None  # 0 manual, 1 periodic, 2 temporary
    tasks: tuple[str, ...]  # task names, from ``graph``'s ``tasks``


def _graph_tasks(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tasks of a flow's or instance's ``graph`` (JSON string or object), else ``tasks``."""
    graph: object = data.get("graph")
    if isinstance(graph, str):
        try:
            graph = json.loads(graph)
        except ValueError:
            graph = None
    if "graph" not in data:
        graph = {"tasks": data.get("tasks")}
    tasks = graph.get("tasks") if isinstance(graph, dict) else None
    return [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else []


def _task_name(task: Mapping[str, Any]) -> str:
    name = task.get("taskName")
    return str(name if name is not None else task.get("taskId", "?"))


def int_of(value: object) -> int | None:
    """An int from the service (a ``flowId``, a code): an int, or a string of digits; None for
    anything else (booleans too)."""
    text = value.strip() if isinstance(value, str) else None
    if text is not None and re.fullmatch(r"-?[0-9]{1,18}", text):
        return int(text)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_flow(data: object) -> FlowInfo | None:
    """A Get Flow answer's ``data`` as a :class:`FlowInfo`; None when it is missing, empty or
    not a flow (no integer ``flowId``). A one-element list is read as its element."""
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict) or not data:
        return None
    flow_id = int_of(data.get("flowId"))
    if flow_id is None:
        return None
    owner, name = data.get("owner"), data.get("flowName")
    return FlowInfo(
        flow_id=flow_id,
        name=name if isinstance(name, str) else "",
        owners=tuple(o.strip() for o in owner.split(";") if o.strip()) if isinstance(owner, str) else (),
        locked=str(data.get("locked")).lower() in ("true", "1"),
        user_locked=str(data.get("isUserLocked")).lower() in ("true", "1"),
        active=int_of(data.get("active")),
        type=int_of(data.get("type")),
        tasks=tuple(_task_name(t) for t in _graph_tasks(data)),
    )


def flow_refusal(info: FlowInfo | None) -> str | None:
    """Why a flow is refused before anything is sent to it (contract section 11), or None."""
    if info is None:
        return "does not exist or is not visible"
    if info.locked:
        return "flow is locked"
    if info.user_locked:
        return "user is locked"
    if not info.tasks:
        return "flow has no task"
    return None


_FAILED_TASK_NAMES = frozenset(STATUS_NAMES[s] for s in FAILED_STATUSES)


def failed_task(instance: Mapping[str, object]) -> tuple[str, str] | None:
    """(task_inst_id, task name) of the first task in an instance's ``graph`` whose status is
    FAIL, INTERNAL_ERROR or TIMEOUT (a name, or its code); None when no task failed."""
    for task in _graph_tasks(instance):
        status = task.get("status")
        code = int_of(status)
        name = STATUS_NAMES.get(code) if code is not None else status
        if isinstance(name, str) and name.strip().upper() in _FAILED_TASK_NAMES:
            return str(task.get("task_inst_id", task.get("taskInstId")) or ""), _task_name(task)
    return None


# -- digests -------------------------------------------------------------------------------


def token_encryption(key: str, timestamp: int | str, secret: str) -> str:
    """The token request's ``encryption``: lowercase hex SHA-256 of key + timestamp + secret."""
    return hashlib.sha256(f"{key}{timestamp}{secret}".encode()).hexdigest()


def signature(
    token: str, params: Mapping[str, str], body: bytes | None, timestamp: int, secret: str
) -> str:
    """``apim-signature``: SHA-256 of token + sorted decoded name/value pairs + body + T + secret."""
    h = hashlib.sha256(token.encode())
    h.update("".join(f"{k}{params[k]}" for k in sorted(params)).encode())
    if body:
        h.update(body)
    h.update(f"{timestamp}{secret}".encode())
    return h.hexdigest()


# -- the gateway URL -----------------------------------------------------------------------

_BAD_URL_CHARS = re.compile(r"[\\\s\x00-\x1f\x7f-\x9f]")
# The only shape accepted: scheme://host[:port][/path], every part in the characters that
# every URL parser (urlsplit, urllib3, requests, curl) reads the same way. A host is a DNS
# name or an IPv4 address, or an IPv6 address in brackets; a path has no "%", "@", "\",
# "?", "#" or ";".
_STRICT_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>(?:/[A-Za-z0-9._~!$&'()*+,=:-]*)*)"
)
_SHOWN_HOST = 100  # characters of a refused host shown in the message


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def gateway_problem(url: str, *, show: bool = True) -> str | None:
    """Why ``url`` is not an acceptable gateway, or None.

    https, or http only to a loopback address; no backslash, user info, whitespace,
    control characters, query or fragment, and nothing that URL parsers could read
    differently (the HTTP stack must connect to the host checked here). ``show=False``:
    never echo any part of the URL (it came from environment variables).
    """
    if _BAD_URL_CHARS.search(url):
        return "gateway URL holds a backslash, whitespace or a control character"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "gateway URL is not a valid URL"
    if "@" in url:
        return "gateway URL must not hold user info (name@host)"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "gateway URL must not hold a query or fragment"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return "gateway URL is not an https:// URL"
    strict = _STRICT_URL.fullmatch(url)
    if strict is None or strict["host"].strip("[]").lower() != host.lower().strip("[]"):
        return (
            "gateway URL is not a plain scheme://host[:port][/path] URL (only letters, "
            "digits, '.', '-' in the host; no '%' or ';' in the path)"
        )
    if strict["port"] is not None and not 0 < int(strict["port"]) < 65536:
        return "gateway URL is not a valid URL"
    if scheme == "https":
        return None
    if is_loopback(host):
        return None
    if not show:
        return "plain http:// is allowed only to a loopback address; use https://"
    shown = host if len(host) <= _SHOWN_HOST else host[:_SHOWN_HOST] + "…"
    return f'plain http:// is allowed only to a loopback address, not "{shown}"; use https://'


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: where requests go, as shown and recorded."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def shown_gateway(written: str | None, url: str) -> str:
    """How to name the gateway in output and logs: ``scheme://host[:port]`` of ``url``, or,
    when the plan wrote it with ``${VAR}`` references, the form as written (the expanded
    value may be a secret and is never shown)."""
    if written and "${" in written:
        text = _BAD_URL_CHARS.sub("?", written)
        return text if len(text) <= _SHOWN_HOST else text[:_SHOWN_HOST] + "…"
    return origin(url)


_PROXY = re.compile(
    r"(?P<scheme>https?)://(?:[^@/\s]+@)?"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?/?",
    re.IGNORECASE,
)


def proxy_problem(url: str) -> str | None:
    """Why ``url`` is not a usable proxy (``http(s)://[user:password@]host[:port]``), or None.
    The message never echoes the URL (it may hold a password)."""
    m = _PROXY.fullmatch(url.strip())
    if m is None:
        return "proxy is not an http://host:port or https://host:port URL"
    if m["port"] is not None and not 0 < int(m["port"]) < 65536:
        return "proxy port is not 1-65535"
    return None


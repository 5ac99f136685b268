"""The service protocol: gateway token and signature, Trigger Flow, instance lookups.

Every answer becomes an :class:`Answer` whose ``kind`` says what ``apply`` must do with it
(DESIGN.md section 5): done, permanent failure, retry, duplicate (look it up), or outcome
unknown (look it up before anything is re-sent). Credentials live only in
:class:`Credentials`, which keeps them out of reprs, logs and error texts.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from planrunner.errors import ServiceError, UsageError
from planrunner.plan import gateway_problem

TRIGGER_PATH = "/dataflow-batch-service/v2.0/flows"
INSTANCES_PATH = "/dataflow-batch-service/v2.0/flowInstances"
TOKEN_GET_PATH = "/apim-token-service/v2.0/token/get"  # noqa: S105 - a URL path
TOKEN_REFRESH_PATH = "/apim-token-service/v2.0/token/refresh"  # noqa: S105 - a URL path
ALL_STATUSES = "-1,0,1,2,3,4,5,6,7,8,9,10"
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
PERMANENT_CODES = {62101, 62103, 62104}
DUPLICATE_CODE = 62102
RETRY_CODE = 62109


class Kind(enum.Enum):
    """What an answer means for the entry it was about."""

    OK = "ok"  # status 0
    PERMANENT = "permanent"  # a definite refusal: record failed, never retry
    DUPLICATE = "duplicate"  # 62102: maybe created within the minute already; look it up
    RETRYABLE = "retryable"  # nothing was created: back off and send again
    UNKNOWN = "unknown"  # the request may have been acted on: look it up before re-sending
    AUTH = "auth"  # 401 or a token error: refresh once, then stop the run
    FATAL = "fatal"  # the gateway refuses this client (403, TLS): stop the run


@dataclass(frozen=True, slots=True)
class Answer:
    """One classified answer. ``code`` is the service status, else the HTTP status."""

    kind: Kind
    code: int | None
    msg: str
    data: Any = None
    retry_after: float | None = None
    http_status: int | None = None

    @property
    def flow_instance_id(self) -> str | None:
        """The instance id of a successful trigger."""
        if isinstance(self.data, dict):
            value = self.data.get("flowInstanceId")
            return value if isinstance(value, str) else None
        return None


class Credentials:
    """App key and secret; never shown in a repr, a log or a message."""

    __slots__ = ("_key", "_secret")

    def __init__(self, access_key: str, secret_key: str) -> None:
        self._key = access_key
        self._secret = secret_key

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read ``ENOS_ACCESS_KEY`` and ``ENOS_SECRET_KEY``; a missing one is a usage error."""
        env = os.environ if environ is None else environ
        missing = [n for n in ("ENOS_ACCESS_KEY", "ENOS_SECRET_KEY") if not env.get(n)]
        if missing:
            raise UsageError(
                f"{' and '.join(missing)} not set: apply needs the app's AccessKey and SecretKey "
                "in the environment (or use --sim)"
            )
        return cls(env["ENOS_ACCESS_KEY"], env["ENOS_SECRET_KEY"])

    def __repr__(self) -> str:
        return "Credentials(access_key=***, secret_key=***)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("credentials are not picklable")

    def encryption(self, timestamp: int) -> str:
        """The token request's ``encryption``: SHA-256 of key + timestamp + secret."""
        return token_encryption(self._key, timestamp, self._secret)

    def sign(
        self, token: str, params: Mapping[str, str], body: bytes | None, timestamp: int
    ) -> str:
        """The ``apim-signature`` of one call."""
        return signature(token, params, body, timestamp, self._secret)

    @property
    def access_key(self) -> str:
        """The app key (sent in token requests; not a secret on its own, still not logged)."""
        return self._key

    def redact(self, text: str) -> str:
        """``text`` with both credentials replaced, for messages built from foreign text."""
        for value in (self._secret, self._key):
            if value:
                text = text.replace(value, "***")
        return text


def token_encryption(key: str, timestamp: int, secret: str) -> str:
    """Lowercase hex SHA-256 of ``key + str(timestamp) + secret``."""
    return hashlib.sha256(f"{key}{timestamp}{secret}".encode()).hexdigest()


def signature(
    token: str, params: Mapping[str, str], body: bytes | None, timestamp: int, secret: str
) -> str:
    """Lowercase hex SHA-256 of token + sorted name/value pairs + body + timestamp + secret."""
    h = hashlib.sha256(token.encode())
    h.update("".join(f"{k}{params[k]}" for k in sorted(params)).encode())
    if body:
        h.update(body)
    h.update(f"{timestamp}{secret}".encode())
    return h.hexdigest()


def instance_id(flow_id: int, trigger_time: int) -> str:
    """``{flowId}-{yyyyMMddHHmm}00``: the trigger time in UTC, cut to the minute."""
    dt = datetime.fromtimestamp(trigger_time // 1000, UTC)
    return f"{flow_id}-{dt:%Y%m%d%H%M}00"


def check_gateway(url: str) -> str:
    """``url`` without a trailing slash, or :class:`UsageError` (https; http only to loopback)."""
    why = gateway_problem(url)
    if why:
        raise UsageError(f"gateway: {why}")
    return url.rstrip("/")


class _Clock:
    """Millisecond timestamps that never repeat in this process (token code 1001)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            now = max(time.time_ns() // 1_000_000, self._last + 1)
            self._last = now
            return now


@dataclass(frozen=True, slots=True)
class Lookup:
    """Whether an instance for a trigger exists: True, False, or None when unknown."""

    found: bool | None
    flow_instance_id: str | None
    reason: str = ""


class Client:
    """A signed client for one gateway, org and user. Thread-safe; one Session per thread."""

    def __init__(
        self,
        gateway: str,
        org_id: str,
        user_id: str,
        credentials: Credentials,
        session_factory: Any = requests.Session,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        refresh_margin: float = 0.2,
    ) -> None:
        self.gateway = check_gateway(gateway)
        self.org_id = org_id
        self.user_id = user_id
        self._creds = credentials
        self._session_factory = session_factory
        self._local = threading.local()
        self._timeout = (connect_timeout, read_timeout)
        self._clock = _Clock()
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_refresh_at = 0.0
        self._refresh_margin = refresh_margin
        self.token_calls = 0
        host = urlsplit(self.gateway).hostname or "?"
        self.where = f"{urlsplit(self.gateway).scheme}://{host}"

    def __repr__(self) -> str:
        return f"Client(gateway={self.gateway!r}, org_id={self.org_id!r}, user_id={self.user_id!r})"

    # -- transport -------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        """This thread's session (connections are reused per thread)."""
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = self._session_factory()
            s.verify = True  # TLS certificates are always verified
            s.trust_env = False  # no proxy or netrc surprises; the gateway is named explicitly
            self._local.session = s
        return s

    def close(self) -> None:
        """Close this thread's session."""
        s = getattr(self._local, "session", None)
        if s is not None:
            s.close()
            self._local.session = None

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: bytes | None,
        headers: dict[str, str],
    ) -> Answer | requests.Response:
        url = self.gateway + path
        try:
            return self.session.request(
                method,
                url,
                params=params,
                data=body,
                headers={"Content-Type": "application/json", **headers}
                if body is not None
                else headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout:
            return Answer(Kind.RETRYABLE, None, "connect timeout (nothing sent)")
        except requests.exceptions.SSLError as e:
            return Answer(
                Kind.FATAL,
                None,
                f"TLS error talking to {self.where}: {self._creds.redact(type(e).__name__)}",
            )
        except requests.exceptions.ReadTimeout:
            return Answer(Kind.UNKNOWN, None, "read timeout after sending")
        except requests.exceptions.ConnectionError as e:
            if _never_connected(e):
                return Answer(Kind.RETRYABLE, None, "connection refused (nothing sent)")
            return Answer(Kind.UNKNOWN, None, "connection dropped after sending")
        except requests.exceptions.RequestException as e:
            return Answer(Kind.UNKNOWN, None, f"transport error after sending ({type(e).__name__})")

    # -- token ------------------------------------------------------------------------

    def _token_call(self, path: str, extra: dict[str, str]) -> Answer:
        for _ in range(3):
            ts = self._clock.next()
            body = json.dumps(
                {
                    "appKey": self._creds.access_key,
                    "encryption": self._creds.encryption(ts),
                    "timestamp": ts,
                    **extra,
                },
                separators=(",", ":"),
            ).encode()
            self.token_calls += 1
            sent = self._send("POST", path, {}, body, {})
            answer = sent if isinstance(sent, Answer) else _classify(sent)
            if answer.code == 1001:
                continue  # repeated encryption: a fresh timestamp fixes it
            return answer
        return answer

    def token(self, force: bool = False) -> str:
        """A valid access token, fetched or refreshed well before it expires."""
        with self._token_lock:
            now = time.monotonic()
            if self._token is not None and not force and now < self._token_refresh_at:
                return self._token
            answer: Answer | None = None
            if self._token is not None and now < self._token_expires:
                answer = self._token_call(TOKEN_REFRESH_PATH, {"accessToken": self._token})
                if answer.kind is not Kind.OK:
                    answer = None  # fall back to a new token
            if answer is None:
                answer = self._token_call(TOKEN_GET_PATH, {})
            if answer.kind is not Kind.OK or not isinstance(answer.data, dict):
                detail = TOKEN_ERRORS.get(answer.code or 0, answer.msg)
                raise ServiceError(
                    f"cannot get an access token from {self.where}: {self._creds.redact(detail)} (code {answer.code})"
                )
            token = answer.data.get("accessToken")
            expire = answer.data.get("expire", 7200)
            if not isinstance(token, str) or not isinstance(expire, int | float):
                raise ServiceError(f"token answer from {self.where} has no accessToken")
            self._token = token
            self._token_expires = now + float(expire)
            self._token_refresh_at = now + float(expire) * (1 - self._refresh_margin)
            return token

    # -- signed calls -----------------------------------------------------------------

    def call(
        self, method: str, path: str, params: dict[str, str], payload: dict[str, Any] | None
    ) -> Answer:
        """One signed API call; a 401 or token error refreshes the token and retries once."""
        body = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else None
        full = {**params, "userId": self.user_id, "orgId": self.org_id}
        answer = Answer(Kind.AUTH, None, "not sent")
        for attempt in range(2):
            token = self.token(force=attempt > 0)
            ts = self._clock.next()
            headers = {
                "apim-accesstoken": token,
                "apim-timestamp": str(ts),
                "apim-signature": self._creds.sign(token, full, body, ts),
            }
            sent = self._send(method, path, full, body, headers)
            answer = sent if isinstance(sent, Answer) else _classify(sent)
            if answer.kind is not Kind.AUTH:
                return answer
        return answer

    def trigger(self, flow_id: int, trigger_time: int) -> Answer:
        """Trigger Flow (the seed API)."""
        return self.call(
            "POST",
            TRIGGER_PATH,
            {"action": "trigger"},
            {"flowId": flow_id, "triggerTime": trigger_time},
        )

    def get_instance(self, flow_inst_id: str) -> Answer:
        """Get Flow Instance by id."""
        return self.call("GET", INSTANCES_PATH, {"action": "get", "flowInstId": flow_inst_id}, None)

    def search_instances(
        self, flow_id: int, from_ms: int, to_ms: int, page_no: int = 0, page_size: int = 100
    ) -> Answer:
        """Search Flow Instances of ``flow_id`` (expression) with trigger time in a window."""
        payload = {
            "fromTriggerTime": from_ms,
            "toTriggerTime": to_ms,
            "expression": str(flow_id),
            "status": ALL_STATUSES,
            "pagination": {"pageNo": page_no, "pageSize": page_size},
        }
        return self.call("POST", INSTANCES_PATH, {"action": "search"}, payload)

    def find_instance(self, flow_id: int, trigger_time: int) -> Lookup:
        """Does an instance for this trigger exist? Get by the derived id, then Search."""
        derived = instance_id(flow_id, trigger_time)
        got = self.get_instance(derived)
        if got.kind is Kind.OK and isinstance(got.data, dict):
            if _same_trigger(got.data, flow_id, trigger_time):
                return Lookup(True, str(got.data.get("instanceId") or derived))
        elif got.kind is not Kind.DUPLICATE:  # 62102 is "instance not found" on lookups
            return Lookup(None, None, f"get flow instance: {got.msg}")
        minute = trigger_time - trigger_time % 60_000
        page = 0
        while True:
            found = self.search_instances(flow_id, minute, minute + 59_999, page)
            if found.kind is not Kind.OK or not isinstance(found.data, dict):
                return Lookup(None, None, f"search flow instances: {found.msg}")
            insts = found.data.get("flowInsts") or []
            for inst in insts:
                if isinstance(inst, dict) and _same_trigger(inst, flow_id, trigger_time):
                    return Lookup(
                        True, str(inst.get("instanceId") or inst.get("flowInstanceId") or derived)
                    )
            count = found.data.get("count", 0)
            page += 1
            if not insts or not isinstance(count, int) or page * 100 >= count or page >= 50:
                return Lookup(False, None)


def _same_trigger(inst: Mapping[str, Any], flow_id: int, trigger_time: int) -> bool:
    try:
        same_flow = int(inst.get("flowId", -1)) == flow_id
        tt = int(inst.get("triggerTime", -1))
    except (TypeError, ValueError):
        return False
    # The service keeps one instance per flow and UTC minute: same minute, same trigger.
    return same_flow and tt // 60_000 == trigger_time // 60_000


def _never_connected(e: requests.exceptions.ConnectionError) -> bool:
    """Whether the request certainly never reached the server (refused, DNS, no route)."""
    cause: BaseException | None = e
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, ConnectionRefusedError):
            return True
        name = type(cause).__name__
        if name in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError"):
            return True
        args = getattr(cause, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        cause = getattr(cause, "reason", None) or nested or cause.__cause__ or cause.__context__
        seen += 1
    return False


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _classify(resp: requests.Response) -> Answer:
    """Section 5's table, for an HTTP response."""
    status = resp.status_code
    text = resp.text[:200].strip()
    if status in (401,):
        return Answer(Kind.AUTH, 401, f"HTTP 401 {text}", http_status=status)
    if status in (429, 503):
        return Answer(
            Kind.RETRYABLE,
            status,
            f"HTTP {status}",
            retry_after=_retry_after(resp),
            http_status=status,
        )
    if status in (500, 502, 504):
        return Answer(Kind.UNKNOWN, status, f"HTTP {status} after sending", http_status=status)
    if status == 403:
        return Answer(
            Kind.FATAL,
            403,
            "HTTP 403: the gateway does not allow this client (IP not allowed?)",
            http_status=status,
        )
    if status != 200:
        return Answer(Kind.PERMANENT, status, f"HTTP {status} {text}".strip(), http_status=status)
    try:
        body = resp.json()
        code = int(body["status"])
    except (ValueError, KeyError, TypeError):
        return Answer(Kind.UNKNOWN, None, "unparsable answer body", http_status=status)
    msg = str(body.get("msg", "")).strip()
    data = body.get("data")
    if code == 0:
        return Answer(Kind.OK, 0, msg, data, http_status=status)
    if code in TOKEN_ERRORS:
        return Answer(Kind.AUTH, code, msg or TOKEN_ERRORS[code], http_status=status)
    if code == RETRY_CODE:
        return Answer(Kind.RETRYABLE, code, msg, http_status=status)
    if code == DUPLICATE_CODE:
        return Answer(Kind.DUPLICATE, code, msg, http_status=status)
    return Answer(Kind.PERMANENT, code, msg, http_status=status)

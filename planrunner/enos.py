"""The service client: gateway token and signature, Trigger Flow, lookups, status and cancel.

Every answer becomes an :class:`Answer` whose ``kind`` says what the engine must do with
it: done, permanent refusal, retry, duplicate (look it up), outcome unknown (look it up
before anything is re-sent), or auth. The wire facts (paths, envelopes, codes, digests,
time strings) come from :mod:`planrunner.protocol`, shared with the simulator.
Credentials live only in :class:`Credentials`; text from the gateway is cleaned by
:meth:`Client.clean` (credentials and token redacted, control characters stripped, cut to
:data:`FOREIGN_TEXT_LIMIT`) before it goes anywhere.
"""

from __future__ import annotations

import enum
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection

from planrunner import protocol
from planrunner.errors import ServiceError, UsageError
from planrunner.protocol import Api

FOREIGN_TEXT_LIMIT = 500  # characters of a gateway's message kept in output, logs, ledger
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
TOKEN_REFRESH_MARGIN = 0.2  # refresh once 80% of the token's lifetime has passed
TOKEN_TRIES = 3  # token calls per token (1001 "repeated encryption" gets a fresh timestamp)
LOOKUP_TRIES = 6  # tries of one lookup call while it is answered retryable
LOOKUP_BACKOFF_BASE = 0.2
LOOKUP_BACKOFF_CAP = 5.0
MAX_SEARCH_PAGES = 50
_TOKEN_CHARS = re.compile(r"[!-~]{1,4096}")  # visible ASCII: a header value as sent
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


class Kind(enum.Enum):
    """What an answer means for the entry it was about."""

    OK = "ok"  # code 0
    PERMANENT = "permanent"  # a definite refusal: record failed, never retry
    DUPLICATE = "duplicate"  # 62102 on Trigger: maybe an instance for the minute exists
    RETRYABLE = "retryable"  # nothing was created: back off and send again
    UNKNOWN = "unknown"  # the request may have been acted on: look it up before re-sending
    AUTH = "auth"  # 401, a token error, or an auth failure in a 200 body
    FATAL = "fatal"  # the gateway cannot be talked to safely (TLS): stop the run


@dataclass(frozen=True, slots=True)
class Answer:
    """One classified answer. ``code`` is the service code, else the HTTP status."""

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
                f"{' and '.join(missing)} not set: planrunner needs the app's AccessKey and SecretKey "
                "in the environment (or use --sim)"
            )
        return cls(env["ENOS_ACCESS_KEY"], env["ENOS_SECRET_KEY"])

    def __repr__(self) -> str:
        return "Credentials(access_key=***, secret_key=***)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("credentials are not picklable")

    def encryption(self, timestamp: int) -> str:
        """The token request's ``encryption``."""
        return protocol.token_encryption(self._key, timestamp, self._secret)

    def sign(
        self, token: str, params: Mapping[str, str], body: bytes | None, timestamp: int
    ) -> str:
        """The ``apim-signature`` of one call."""
        return protocol.signature(token, params, body, timestamp, self._secret)

    @property
    def access_key(self) -> str:
        """The app key (sent in token requests; still never logged)."""
        return self._key

    def redact(self, text: str) -> str:
        """``text`` with both credentials replaced, for messages built from foreign text."""
        for value in (self._secret, self._key):
            if value:
                text = text.replace(value, "***")
        return text


def check_gateway(url: str) -> str:
    """``url`` without a trailing slash, or :class:`UsageError` (https; http only to loopback)."""
    why = protocol.gateway_problem(url)
    if why:
        raise UsageError(f"gateway: {why}")
    return url.rstrip("/")


class NotLoopbackError(Exception):
    """A plain http:// connection reached a peer that is not a loopback address."""

    def __init__(self, peer: str) -> None:
        super().__init__(f"peer {peer} is not a loopback address")
        self.peer = peer


def _peer_address(sock: Any) -> str:
    """The address a connected socket's peer has (a test may replace this)."""
    return str(sock.getpeername()[0])


class _LoopbackOnlyConnection(urllib3.connection.HTTPConnection):
    """An http:// connection that refuses, before sending a byte, a peer off loopback
    (a name that resolves elsewhere, or anything the URL check did not foresee)."""

    def connect(self) -> None:
        super().connect()
        try:
            peer = _peer_address(self.sock)
        except OSError:
            peer = "an unknown address"
        if not protocol.is_loopback(peer.split("%", 1)[0]):
            self.close()
            raise NotLoopbackError(peer)


class _LoopbackOnlyPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _LoopbackOnlyConnection


class _LoopbackOnlyAdapter(requests.adapters.HTTPAdapter):
    """Mounted for ``http://``: its connections check the peer address."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        classes = dict(self.poolmanager.pool_classes_by_scheme)
        classes["http"] = _LoopbackOnlyPool
        self.poolmanager.pool_classes_by_scheme = classes


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
    """A signed client for one gateway, org and user. Thread-safe; one Session per thread.

    ``server_zone`` is the zone the service writes instance times in; None means "ask the
    service" (Get Time Zone, once, when a lookup first needs it).
    """

    def __init__(
        self,
        gateway: str,
        org_id: str,
        user_id: str,
        credentials: Credentials,
        session_factory: Callable[[], requests.Session] = requests.Session,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        refresh_margin: float = TOKEN_REFRESH_MARGIN,
        *,
        api: Api = protocol.DEFAULT_API,
        server_zone: tzinfo | None = None,
        lookup_tries: int = LOOKUP_TRIES,
    ) -> None:
        self.gateway = check_gateway(gateway)
        self.org_id = org_id
        self.user_id = user_id
        self.api = api
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
        self._zone = server_zone
        self._zone_lock = threading.Lock()
        self._lookup_tries = lookup_tries
        self.token_calls = 0
        self.where = protocol.origin(self.gateway)

    def __repr__(self) -> str:
        return f"Client(gateway={self.where!r}, org_id={self.org_id!r}, user_id={self.user_id!r})"

    # -- foreign text ------------------------------------------------------------------

    def clean(self, text: str) -> str:
        """Foreign text made safe to show: secrets and token redacted, controls out, cut."""
        text = self._creds.redact(text)
        if self._token:
            text = text.replace(self._token, "***")
        text = _CONTROL.sub(" ", text).replace("::", ": :")
        if len(text) > FOREIGN_TEXT_LIMIT:
            text = text[: FOREIGN_TEXT_LIMIT - 1] + "…"
        return text

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
        if body is not None:
            headers = {"Content-Type": "application/json;charset=UTF-8", **headers}
        session = self.session
        if self.gateway[:7].lower() == "http://" and getattr(self._local, "guarded", None) is not session:
            # Plain http:// goes to loopback only: the connected peer is checked too.
            mount = getattr(session, "mount", None)
            if mount is not None:
                mount("http://", _LoopbackOnlyAdapter())
            self._local.guarded = session
        try:
            return session.request(
                method,
                url,
                params=params,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except NotLoopbackError as e:
            raise ServiceError(
                f"plain http:// gateway {self.where} connected to {e.peer}, which is not a "
                "loopback address; nothing was sent (use https://)"
            ) from None
        except (
            requests.exceptions.InvalidHeader,
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            UnicodeError,
        ) as e:
            # Raised while the request is built, before a byte leaves: nothing was sent.
            raise ServiceError(
                f"cannot build a request to {self.where} ({type(e).__name__}); nothing was sent"
            ) from None
        except requests.exceptions.ConnectTimeout:
            return Answer(Kind.RETRYABLE, None, "connect timeout (nothing sent)")
        except requests.exceptions.SSLError as e:
            return Answer(Kind.FATAL, None, f"TLS error talking to {self.where}: {type(e).__name__}")
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
        answer = Answer(Kind.AUTH, None, "not sent")
        for _ in range(TOKEN_TRIES):
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
            answer = sent if isinstance(sent, Answer) else self._classify(sent, "token")
            if answer.code == protocol.TOKEN_REPEATED:
                continue  # repeated encryption: a fresh timestamp fixes it
            return answer
        return answer

    def token(self, force: bool = False) -> str:
        """A valid access token, fetched or refreshed well before it expires.

        Raises :class:`ServiceError` when none can be had: call it before writing intents,
        so a run without a token sends nothing and records nothing.
        """
        with self._token_lock:
            now = time.monotonic()
            if self._token is not None and not force and now < self._token_refresh_at:
                return self._token
            answer: Answer | None = None
            if self._token is not None and now < self._token_expires:
                answer = self._token_call(
                    protocol.TOKEN_REFRESH_PATH, {"accessToken": self._token}
                )
                if answer.kind is not Kind.OK:
                    answer = None  # fall back to a new token
            if answer is None:
                answer = self._token_call(protocol.TOKEN_GET_PATH, {})
            if answer.kind is not Kind.OK or not isinstance(answer.data, dict):
                detail = protocol.TOKEN_ERRORS.get(answer.code or 0, answer.msg)
                raise ServiceError(
                    f"cannot get an access token from {self.where}: {self.clean(detail)}{code_text(answer)}"
                )
            token = answer.data.get("accessToken")
            expire = answer.data.get("expire", 7200)
            if not isinstance(token, str) or not isinstance(expire, int | float):
                raise ServiceError(f"token answer from {self.where} has no accessToken")
            if not _TOKEN_CHARS.fullmatch(token):
                # It could not go in a header: nothing would leave the machine.
                raise ServiceError(
                    f"token answer from {self.where} has an accessToken that cannot be sent "
                    "(empty, or spaces, control or non-ASCII characters)"
                )
            self._token = token
            self._token_expires = now + float(expire)
            self._token_refresh_at = now + float(expire) * (1 - self._refresh_margin)
            return token

    # -- signed calls -----------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        payload: dict[str, Any] | None,
        op: str = "lookup",
        *,
        identity: bool = True,
    ) -> Answer:
        """One signed API call; an auth failure refreshes the token and retries once.

        ``op`` is ``trigger`` or ``lookup``: 62109 means "unknown" for a trigger (the
        exception may come after the instance was made) and "retry" for a lookup.
        """
        body = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else None
        full = {**params, "userId": self.user_id, "orgId": self.org_id} if identity else params
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
            answer = sent if isinstance(sent, Answer) else self._classify(sent, op)
            if answer.kind is not Kind.AUTH:
                return answer
        return answer

    def trigger(self, flow_id: int, trigger_time: int) -> Answer:
        """Trigger Flow (the seed API)."""
        return self.call(
            "POST",
            self.api.flows,
            {"action": "trigger"},
            {"flowId": flow_id, "triggerTime": trigger_time},
            "trigger",
        )

    def get_instance(self, flow_inst_id: str) -> Answer:
        """Get Flow Instance by id (retried while retryable)."""
        return self._lookup_call(
            "GET", self.api.instances, {"action": "get", "flowInstId": flow_inst_id}, None
        )

    def search_instances(
        self,
        from_ms: int,
        to_ms: int,
        *,
        type_: int = protocol.TYPE_MANUAL,
        page_no: int | None = None,
        page_size: int = protocol.PAGE_SIZE,
        expression: str = "",
    ) -> Answer:
        """Search Flow Instances with trigger time in ``[from_ms, to_ms)``, every status."""
        body = protocol.search_body(
            self.api,
            from_ms,
            to_ms,
            type_=type_,
            page_no=self.api.first_page if page_no is None else page_no,
            page_size=page_size,
            expression=expression,
        )
        return self._lookup_call("POST", self.api.instances, {"action": "search"}, body)

    def cancel_instance(self, flow_inst_id: str) -> Answer:
        """Cancel Flow Instance."""
        return self.call(
            "POST", self.api.instances, {"action": "cancel"}, {"flowInstId": flow_inst_id}, "cancel"
        )

    def get_flow(self, flow_id: int) -> Answer:
        """Get Flow: owner, type, locked."""
        return self._lookup_call(
            "GET", self.api.flows, {"action": "get", "flowId": str(flow_id)}, None
        )

    def get_time_zone(self) -> Answer:
        """Get Time Zone: ``data`` is ``{"timezone": "GMT+8"}``."""
        return self._lookup_call(
            "GET", self.api.time, {"action": "getTimeZone"}, None, identity=False
        )

    def get_current_time(self) -> Answer:
        """Get Current Time: ``data`` is epoch ms."""
        return self._lookup_call(
            "GET", self.api.time, {"action": "getCurrentTime"}, None, identity=False
        )

    def _lookup_call(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        payload: dict[str, Any] | None,
        *,
        identity: bool = True,
    ) -> Answer:
        """A read-only call, retried with backoff and full jitter on 429, 503, 62109, 5xx and
        connection errors (reading twice is harmless)."""
        answer = Answer(Kind.UNKNOWN, None, "not sent")
        for tries in range(self._lookup_tries):
            answer = self.call(method, path, params, payload, "lookup", identity=identity)
            if answer.kind not in (Kind.RETRYABLE, Kind.UNKNOWN):
                return answer
            if tries + 1 < self._lookup_tries:
                delay = random.uniform(0, min(LOOKUP_BACKOFF_CAP, LOOKUP_BACKOFF_BASE * 2**tries))
                if answer.retry_after is not None:
                    delay = max(delay, min(answer.retry_after, LOOKUP_BACKOFF_CAP))
                time.sleep(delay)
        return answer

    # -- lookups ------------------------------------------------------------------------

    def server_zone(self) -> tzinfo:
        """The zone of the service's time strings: given, else asked once (Get Time Zone).

        Raises :class:`ServiceError` when the service cannot say; never assumes UTC.
        """
        with self._zone_lock:
            if self._zone is not None:
                return self._zone
            answer = self.get_time_zone()
            name = answer.data.get("timezone") if isinstance(answer.data, dict) else None
            if answer.kind is not Kind.OK or not isinstance(name, str):
                raise ServiceError(
                    f"cannot learn the server's time zone from {self.where} (Get Time Zone: "
                    f"{self.clean(answer.msg) or answer.code}); set target.serverTimezone in the plan"
                )
            try:
                self._zone = protocol.server_zone(name)
            except ValueError as e:
                raise ServiceError(
                    f"{self.where} reports {self.clean(str(e))}; set target.serverTimezone in the plan"
                ) from None
            return self._zone

    def find_instance(self, flow_id: int, trigger_time: int) -> Lookup:
        """Does the service have an instance of ``flow_id`` triggered at ``trigger_time``?

        Found means the same flowId and the same trigger time to the second, read in the
        server's zone. Get by the derived id is only a fast path whose answer is verified;
        Search over the entry's minute decides "absent", and only when every search answered.
        """
        try:
            zone = self.server_zone()
        except ServiceError as e:
            return Lookup(None, None, str(e))
        candidates = dict.fromkeys(
            (
                protocol.instance_id(flow_id, trigger_time),
                protocol.instance_id(flow_id, trigger_time, zone),
            )
        )
        for derived in candidates:
            got = self.get_instance(derived)
            if got.kind is Kind.AUTH or got.kind is Kind.FATAL:
                return Lookup(None, None, f"get flow instance: {self.clean(got.msg)}")
            if (
                got.kind is Kind.OK
                and isinstance(got.data, dict)
                and protocol.same_trigger(got.data, flow_id, trigger_time, zone)
            ):
                return Lookup(True, str(got.data.get("instanceId") or derived))
            # Anything else ("not found" as 62102, null or {}, or a different instance)
            # falls through to Search: only Search decides "absent".
        minute = trigger_time - trigger_time % protocol.MINUTE_MS
        failures: list[str] = []
        for type_ in protocol.SEARCH_TYPES:
            found, why = self._search_minute(flow_id, trigger_time, minute, type_, zone)
            if found is not None:
                return Lookup(True, found)
            if why:
                failures.append(why)
        if failures:
            return Lookup(None, None, f"search flow instances: {failures[0]}")
        return Lookup(False, None)

    def _search_minute(
        self, flow_id: int, trigger_time: int, minute: int, type_: int, zone: tzinfo
    ) -> tuple[str | None, str]:
        """(instance id found, "") or (None, why the search failed) or (None, "")."""
        first = self.api.first_page
        pages = [first]
        seen_any = False
        while pages:
            page_no = pages.pop(0)
            answer = self.search_instances(
                minute, minute + protocol.MINUTE_MS, type_=type_, page_no=page_no
            )
            if answer.kind is not Kind.OK or not isinstance(answer.data, dict):
                return None, self.clean(answer.msg) or f"code {answer.code}"
            insts = answer.data.get("flowInsts") or []
            if not isinstance(insts, list):
                return None, "search answer has no flowInsts list"
            for inst in insts:
                if isinstance(inst, dict) and protocol.same_trigger(
                    inst, flow_id, trigger_time, zone
                ):
                    iid = inst.get("instanceId") or inst.get("flowInstanceId")
                    return str(iid or protocol.instance_id(flow_id, trigger_time)), ""
            if insts:
                seen_any = True
            if len(insts) >= protocol.PAGE_SIZE and page_no - first + 1 < MAX_SEARCH_PAGES:
                pages.append(page_no + 1)  # a full page: there may be more
            elif not seen_any and page_no == first and first != 0:
                pages.append(0)  # samples disagree on v2.1's first page: ask page 0 too
        return None, ""

    # -- answers ------------------------------------------------------------------------

    def _classify(self, resp: requests.Response, op: str) -> Answer:
        """The answer table of docs/apply.md, for an HTTP response to an ``op`` call."""
        status = resp.status_code
        if status == 401:
            return Answer(Kind.AUTH, 401, "HTTP 401 (token or signature refused)", http_status=401)
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
        if status != 200:
            text = self.clean(resp.text[:FOREIGN_TEXT_LIMIT].strip())
            return Answer(
                Kind.PERMANENT, status, f"HTTP {status} {text}".strip(), http_status=status
            )
        try:
            env = protocol.read_envelope(resp.json())
        except ValueError:
            env = None
        if env is None:
            return Answer(Kind.UNKNOWN, None, "unparsable answer body", http_status=status)
        msg = self.clean(env.msg)
        if env.auth_failure:
            detail = protocol.TOKEN_ERRORS.get(env.code or 0, msg or "auth failure")
            return Answer(Kind.AUTH, env.code, detail, http_status=status)
        if env.code == protocol.OK:
            return Answer(Kind.OK, 0, msg, env.data, http_status=status)
        if env.code == protocol.SERVER_ERROR:
            kind = Kind.UNKNOWN if op == "trigger" else Kind.RETRYABLE
            return Answer(kind, env.code, msg or "server internal exception", http_status=status)
        if env.code == protocol.BAD_PARAMETER_OR_DUPLICATE and op == "trigger":
            return Answer(Kind.DUPLICATE, env.code, msg, http_status=status)
        return Answer(Kind.PERMANENT, env.code, msg, http_status=status)


def code_text(answer: Answer) -> str:
    """`` (code N)`` when the answer has a code; nothing otherwise (never "None")."""
    return f" (code {answer.code})" if answer.code is not None else ""


def describe(answer: Answer, msg: str | None = None) -> str:
    """``CODE: message``, or the message alone when there is no code."""
    text = answer.msg if msg is None else msg
    return f"{answer.code}: {text}" if answer.code is not None else text


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

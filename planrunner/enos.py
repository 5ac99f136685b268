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

import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import tzinfo
from typing import Any

import requests
import requests.adapters

from planrunner import answers, protocol, transport
from planrunner import credentials as _credentials
from planrunner.errors import ServiceError, UsageError
from planrunner.protocol import Api
from planrunner.rate import backoff

# The credentials and the transport's settings, under the names commands and tests know them by.
Credentials = _credentials.Credentials
Kind = answers.Kind
Answer = answers.Answer
Lookup = answers.Lookup
code_text = answers.code_text
describe = answers.describe
MAX_ANSWER_BYTES = transport.MAX_ANSWER_BYTES
decode_json = transport.decode_json
ANSWER_DEADLINE = transport.ANSWER_DEADLINE
ANSWER_DEADLINE_ENV = transport.ANSWER_DEADLINE_ENV
PROXY_ENV = transport.PROXY_ENV
answer_deadline_setting = transport.answer_deadline_setting
proxy_given = transport.proxy_given
proxy_setting = transport.proxy_setting

FOREIGN_TEXT_LIMIT = 500  # characters of a gateway's message kept in output, logs, ledger
CREDENTIAL_PIECE = 4  # a credential's prefix this long left at a cut is redacted too
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # per read
TOKEN_LIFETIME_MAX = 366 * 86_400.0  # seconds; an "expire" outside (0, this] is unusable
INSTANCE_ID = answers.INSTANCE_ID  # {flowId}-{digits}, with room
STATUS_TEXT_LIMIT = 32  # characters of an unknown instance status shown
TOKEN_REFRESH_MARGIN = 0.2  # refresh once 80% of the token's lifetime has passed
TOKEN_TRIES = 3  # token calls per token (1001 "repeated encryption" gets a fresh timestamp)
LOOKUP_TRIES = 6  # tries of one lookup call while it is answered retryable
LOOKUP_BACKOFF_BASE = 0.2
LOOKUP_BACKOFF_CAP = 5.0
LOOKUP_BACKOFF_ENV = "PLANRUNNER_LOOKUP_BACKOFF_CAP"  # tests shorten the lookup backoff with it
_TOKEN_CHARS = re.compile(r"[!-~]{1,4096}")  # visible ASCII: a header value as sent
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


# HTTP statuses the gateway answers before the service acts: a definite refusal.
GATEWAY_REFUSALS = protocol.PERMANENT_HTTP | {404, 405, 414, 431}
NOT_FOUND_HINT = " (wrong target.api? run planrunner doctor)"


def check_gateway(url: str) -> str:
    """``url`` without a trailing slash, or :class:`UsageError` (https; http only to loopback)."""
    why = protocol.gateway_problem(url)
    if why:
        raise UsageError(f"gateway: {why}")
    return url.rstrip("/")


def lookup_backoff_setting(environ: Mapping[str, str] | None = None) -> float:
    """``$PLANRUNNER_LOOKUP_BACKOFF_CAP`` (seconds, >= 0), else :data:`LOOKUP_BACKOFF_CAP`:
    the longest wait between the tries of one lookup call (tests set it near 0)."""
    return transport.seconds_setting(LOOKUP_BACKOFF_ENV, LOOKUP_BACKOFF_CAP, environ, zero=True)


class Client:
    """A signed client for one gateway, org and user. Thread-safe; one Session per thread.

    ``server_zone`` is the zone the service writes instance times in; None means "ask the
    service" (Get Time Zone, once, when a lookup first needs it). ``shown`` is how the
    gateway is named in messages (default ``scheme://host[:port]``; see
    :func:`protocol.shown_gateway`). ``proxy`` (default: :func:`proxy_setting`) carries
    https:// requests through an explicit proxy; ``answer_deadline`` bounds each whole answer.
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
        lookup_backoff_cap: float | None = None,
        shown: str | None = None,
        proxy: str | None = None,
        answer_deadline: float | None = None,
    ) -> None:
        self.gateway = check_gateway(gateway)
        self.org_id = org_id
        self.user_id = user_id
        self.api = api
        self._creds = credentials
        self._session_factory = session_factory
        self._local = threading.local()
        self._timeout = (connect_timeout, read_timeout)
        self._clock = _credentials.Clock()
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_refresh_at = 0.0
        self._refresh_margin = refresh_margin
        self._zone = server_zone
        self._zone_lock = threading.Lock()
        self._lookup_tries = lookup_tries
        self._lookup_cap = (
            lookup_backoff_cap if lookup_backoff_cap is not None else lookup_backoff_setting()
        )
        self.token_calls = 0
        self.where = shown or protocol.origin(self.gateway)
        self.proxy = proxy if proxy is not None else proxy_setting()
        if self.proxy is not None and protocol.proxy_problem(self.proxy):
            raise UsageError(f"proxy: {protocol.proxy_problem(self.proxy)}")
        self._deadline = answer_deadline if answer_deadline is not None else answer_deadline_setting()

    def __repr__(self) -> str:
        return f"Client(gateway={self.where!r}, org_id={self.org_id!r}, user_id={self.user_id!r})"

    # -- foreign text ------------------------------------------------------------------

    def clean(self, text: str, limit: int = FOREIGN_TEXT_LIMIT) -> str:
        """Foreign text made safe to show: secrets and token redacted, controls out, then
        cut to ``limit`` characters, a credential's piece left at the cut redacted too."""
        text = self._creds.redact(text[: transport.FOREIGN_READ_LIMIT])
        token = self._token
        if token:
            text = text.replace(token, "***")
        text = _CONTROL.sub(" ", text).replace("::", ": :")
        if len(text) > limit:
            text = text[: limit - 1]
            for value in (*self._creds.values(), token or ""):
                for n in range(min(len(value) - 1, len(text)), CREDENTIAL_PIECE - 1, -1):
                    if text.endswith(value[:n]):
                        text = text[:-n] + "***"
                        break
            text += "…"
        return text

    def checked_id(self, value: object) -> str | None:
        """An instance id from the service, or None when it has not the shape of one
        (``{flowId}-{digits}``-like, at most 100 characters) or holds a credential."""
        if not isinstance(value, str) or not INSTANCE_ID.fullmatch(value):
            return None
        return value if self.clean(value) == value else None

    def checked_status(self, value: object) -> int | str | None:
        """An instance status: a known code as is; anything else as short, cleaned text."""
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value in protocol.STATUS_NAMES:
            return value
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,3}", value.strip()):
            code = int(value)
            if code in protocol.STATUS_NAMES:
                return code
        text = value if isinstance(value, str) else json.dumps(value)[:STATUS_TEXT_LIMIT * 4]
        text = self.clean(" ".join(text.split()), STATUS_TEXT_LIMIT)
        return text or "?"

    def checked_instance(self, inst: object) -> dict[str, Any] | None:
        """A FlowInstance from the service with its id(s) and status checked, or None."""
        if not isinstance(inst, dict):
            return None
        out = dict(inst)
        for key in ("instanceId", "flowInstanceId"):
            if key in out:
                out[key] = self.checked_id(out[key])
        if "status" in out:
            out["status"] = self.checked_status(out["status"])
        return out

    # -- transport -------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        """This thread's session (connections are reused per thread)."""
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = self._session_factory()
            s.verify = True  # TLS certificates are always verified
            s.trust_env = False  # no proxy or netrc surprises; the gateway is named explicitly
            # Only an explicit proxy (--proxy, $PLANRUNNER_PROXY), and only for https://:
            # a plain http:// gateway is on loopback, which no proxy can reach.
            s.proxies = {"https": self.proxy} if self.proxy else {}
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
    ) -> Answer | transport.Reply:
        url = self.gateway + path
        if body is not None:
            headers = {"Content-Type": "application/json;charset=UTF-8", **headers}
        session = self.session
        if getattr(self._local, "guarded", None) is not session:
            # Plain http:// goes to loopback only (the connected peer is checked too), and
            # every answer has an overall deadline.
            mount = getattr(session, "mount", None)
            if mount is not None:
                adapter = transport.GuardedAdapter()
                mount("http://", adapter)
                mount("https://", adapter)
            self._local.guarded = session
        watch = transport.Watch()
        transport.CURRENT.watch = watch
        transport.WATCHDOG.add(time.monotonic() + self._deadline, watch)
        try:
            resp = session.request(
                method,
                url,
                params=params,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
            )
            reply = transport.read_body(resp)
            if reply is None:
                return Answer(
                    Kind.UNKNOWN,
                    None,
                    f"unparsable answer (over {transport.MAX_ANSWER_BYTES:,} bytes)",
                    http_status=resp.status_code,
                )
            return reply
        except transport.NotLoopbackError as e:
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
        except requests.exceptions.RequestException as e:
            return self._transport_answer(e, watch)
        finally:
            watch.done = True
            transport.CURRENT.watch = None

    def _transport_answer(self, e: requests.exceptions.RequestException, watch: transport.Watch) -> Answer:
        """What a transport failure means: nothing sent, unknown after sending, or TLS."""
        if watch.cut:
            # The overall deadline shut the connection while its answer was awaited.
            return Answer(
                Kind.UNKNOWN,
                None,
                f"read timeout after sending (no whole answer within {self._deadline:g} s)",
            )
        if isinstance(e, requests.exceptions.ConnectTimeout):
            return Answer(Kind.RETRYABLE, None, "connect timeout (nothing sent)")
        if isinstance(e, requests.exceptions.SSLError):
            return Answer(Kind.FATAL, None, f"TLS error talking to {self.where}: {type(e).__name__}")
        if isinstance(e, requests.exceptions.ProxyError):
            return Answer(Kind.RETRYABLE, None, "the proxy refused or could not connect (nothing sent)")
        if isinstance(e, requests.exceptions.ReadTimeout):
            return Answer(Kind.UNKNOWN, None, "read timeout after sending")
        if isinstance(e, requests.exceptions.ConnectionError):
            if transport.never_connected(e):
                return Answer(Kind.RETRYABLE, None, "connection refused (nothing sent)")
            return Answer(Kind.UNKNOWN, None, "connection dropped after sending")
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
            if isinstance(expire, bool) or not 0 < expire <= TOKEN_LIFETIME_MAX:
                raise ServiceError(
                    f"token answer from {self.where} has an unusable lifetime (expire must be "
                    f"1 to {TOKEN_LIFETIME_MAX:.0f} seconds)"
                )
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
        """Get Flow Instance by id (retried while retryable); its id and status checked."""
        got = self._lookup_call(
            "GET", self.api.instances, {"action": "get", "flowInstId": flow_inst_id}, None
        )
        if got.kind is Kind.OK and isinstance(got.data, dict):
            got = dataclasses.replace(got, data=self.checked_instance(got.data))
        return got

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
        found = self._lookup_call("POST", self.api.instances, {"action": "search"}, body)
        insts = found.data.get("flowInsts") if isinstance(found.data, dict) else None
        if found.kind is Kind.OK and isinstance(insts, list):
            checked = [self.checked_instance(inst) for inst in insts]
            found = dataclasses.replace(found, data={**found.data, "flowInsts": checked})
        return found

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
                time.sleep(backoff(tries, LOOKUP_BACKOFF_BASE, self._lookup_cap, answer.retry_after))
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
        (:func:`planrunner.lookup.find_instance`; a method, so the engine's scripted clients
        answer it directly.)"""
        from planrunner import lookup

        return lookup.find_instance(self, flow_id, trigger_time)

    # -- answers ------------------------------------------------------------------------

    def _classify(self, resp: transport.Reply, op: str) -> Answer:
        """The answer table of docs/apply.md, for an HTTP answer to an ``op`` call.

        Only a documented refusal is definite: 401 (auth), 429 and 503 (nothing done, retry),
        the gateway's own refusals (:data:`protocol.PERMANENT_HTTP`, 404, 405, 414, 431) and
        the service's codes. Any other status (every other 5xx, 3xx, other 4xx) and any body
        that is not a service envelope may come after the request was acted on: unknown.
        """
        status = resp.status
        if status == 401:
            return Answer(Kind.AUTH, 401, "HTTP 401 (token or signature refused)", http_status=401)
        if status in (429, 503):
            return Answer(
                Kind.RETRYABLE,
                status,
                f"HTTP {status}",
                retry_after=transport.retry_after(resp.retry_after),
                http_status=status,
            )
        if status != 200:
            text = self.clean(resp.text().strip())
            if status in GATEWAY_REFUSALS:
                hint = NOT_FOUND_HINT if status == 404 and op == "trigger" else ""
                return Answer(
                    Kind.PERMANENT, status, f"HTTP {status} {text}".strip() + hint, http_status=status
                )
            return Answer(
                Kind.UNKNOWN, status, f"HTTP {status} after sending {text}".strip(), http_status=status
            )
        try:
            env = protocol.read_envelope(transport.decode_json(resp.body))
        except ValueError:
            env = None
        if env is None:
            return Answer(Kind.UNKNOWN, None, "unparsable answer body", http_status=status)
        msg = self.clean(env.msg)
        if env.auth_failure:
            detail = protocol.TOKEN_ERRORS.get(env.code or 0, msg or "auth failure")
            return Answer(Kind.AUTH, env.code, detail, http_status=status)
        if env.code == protocol.OK:
            data = env.data
            if isinstance(data, dict) and "flowInstanceId" in data:
                # An id that is not one (or holds a credential) is dropped, never kept.
                data = {**data, "flowInstanceId": self.checked_id(data["flowInstanceId"])}
            return Answer(Kind.OK, 0, msg, data, http_status=status)
        if env.code == protocol.SERVER_ERROR:
            kind = Kind.UNKNOWN if op == "trigger" else Kind.RETRYABLE
            return Answer(kind, env.code, msg or "server internal exception", http_status=status)
        if env.code == protocol.BAD_PARAMETER_OR_DUPLICATE and op == "trigger":
            return Answer(Kind.DUPLICATE, env.code, msg, http_status=status)
        if env.code in protocol.PERMANENT_CODES:  # the table's permanent row
            return Answer(Kind.PERMANENT, env.code, msg, http_status=status)
        # A code the table does not name: the service answered, so it refused; permanent too
        # (a failed key is looked up before it is ever sent again: docs/apply.md).
        return Answer(Kind.PERMANENT, env.code, msg, http_status=status)

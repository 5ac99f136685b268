"""The service client: gateway token and signature, Trigger Flow, lookups, status and cancel.

Every answer becomes an :class:`Answer` whose ``kind`` says what the engine must do with
it: done, permanent refusal, retry, duplicate (look it up), outcome unknown (look it up
before anything is re-sent), auth, or stopped (never sent). Every signed call takes a slot
of the client's one :class:`RateLimiter` and feeds its 429s back to it; once the gateway's
answers say that sending more is pointless (:class:`rate.Refusals`), :attr:`Client.stopped`
holds the reason and every call returns at once, unsent. The wire facts (paths, envelopes, codes, digests,
time strings) come from :mod:`planrunner.protocol`, shared with the simulator.
Credentials live only in :class:`Credentials`; text from the gateway is cleaned by
:meth:`Client.clean` (credentials and token redacted, control characters stripped, cut to
:data:`FOREIGN_TEXT_LIMIT`) before it goes anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import tzinfo
from typing import Any

import requests
import requests.adapters

from planrunner import answers, log, protocol, transport
from planrunner import credentials as _credentials
from planrunner.errors import ServiceError, UsageError
from planrunner.protocol import Api
from planrunner.rate import RateLimiter, Refusals, Slot, backoff

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

FOREIGN_TEXT_LIMIT = _credentials.FOREIGN_TEXT_LIMIT
CREDENTIAL_PIECE = _credentials.CREDENTIAL_PIECE
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # per read
TOKEN_LIFETIME_MAX = 366 * 86_400.0  # seconds; an "expire" outside (0, this] is unusable
INSTANCE_ID = answers.INSTANCE_ID  # {flowId}-{digits}, with room
STATUS_TEXT_LIMIT = answers.STATUS_TEXT_LIMIT
TOKEN_REFRESH_MARGIN = 0.2  # refresh once 80% of the token's lifetime has passed
TOKEN_TRIES = 3  # token calls per token (1001 "repeated encryption" gets a fresh timestamp)
LOOKUP_TRIES = 6  # tries of one lookup call while it is answered retryable
LOOKUP_BACKOFF_BASE = 0.2
LOOKUP_BACKOFF_CAP = 5.0
LOOKUP_BACKOFF_ENV = "PLANRUNNER_LOOKUP_BACKOFF_CAP"  # tests shorten the lookup backoff with it
THROTTLED_TRIES = 90  # 429s of one lookup call not counted as tries (the limiter paces them)
HOLD_CAP = 20.0  # seconds: the longest Retry-After the limiter holds every call for
QUOTA_ENV = "PLANRUNNER_QUOTA_SECONDS"
NOT_ALLOWED_ENV = "PLANRUNNER_NOT_ALLOWED_SECONDS"
STOPPED_WAITING = "stopped before sending (while waiting for the rate limiter)"
_TOKEN_CHARS = re.compile(r"[!-~]{1,4096}")  # visible ASCII: a header value as sent


GATEWAY_REFUSALS = answers.GATEWAY_REFUSALS
NOT_FOUND_HINT = answers.NOT_FOUND_HINT


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
    ``limiter`` paces every signed call (default: a :class:`RateLimiter` with no cap; an
    engine may put its own in :attr:`limiter` before its first call). ``quota_seconds`` and
    ``not_allowed_seconds`` (default: ``$PLANRUNNER_QUOTA_SECONDS``, 60, and
    ``$PLANRUNNER_NOT_ALLOWED_SECONDS``, 30) bound how long only 429s at the floor rate, or
    only 403s/503s, are answered before :attr:`stopped` is set.

    :attr:`calls` counts the signed calls sent, per ``resource.action`` (``flows.trigger``,
    ``flowInstances.search``, ...). :attr:`page_origin` is Search's first ``pageNo`` once
    known (v2.0: 0; v2.1: None until the service has shown it). :attr:`id_zone` is the zone
    of the instance id digits as established (``utc``, the default, or ``server``).
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
        limiter: RateLimiter | None = None,
        quota_seconds: float | None = None,
        not_allowed_seconds: float | None = None,
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
        self.limiter = limiter if limiter is not None else RateLimiter()
        self._refusals = Refusals(
            quota_seconds if quota_seconds is not None else transport.seconds_setting(QUOTA_ENV, 60.0),
            not_allowed_seconds
            if not_allowed_seconds is not None
            else transport.seconds_setting(NOT_ALLOWED_ENV, 30.0),
        )
        self.stopped: str | None = None
        self.calls: dict[str, int] = {}
        self._calls_lock = threading.Lock()
        self._never = threading.Event()  # the stop of a thread that set none
        self.page_origin: int | None = 0 if api.first_page == 0 else None
        self.id_zone = "utc"
        self._log = log.get("client")

    def __repr__(self) -> str:
        return f"Client(gateway={self.where!r}, org_id={self.org_id!r}, user_id={self.user_id!r})"

    # -- foreign text ------------------------------------------------------------------

    def clean(self, text: str, limit: int = FOREIGN_TEXT_LIMIT) -> str:
        """Foreign text made safe to show: secrets and token redacted, controls out, then
        cut to ``limit`` characters, a credential's piece left at the cut redacted too."""
        return self._creds.clean(text, self._token, limit)

    def checked_id(self, value: object) -> str | None:
        """An instance id from the service, or None when it has not the shape of one
        (``{flowId}-{digits}``-like, at most 100 characters) or holds a credential."""
        return answers.checked_id(value, self.clean)

    def checked_status(self, value: object) -> int | str | None:
        """An instance status: a known code as is; anything else as short, cleaned text."""
        return answers.checked_status(value, self.clean)

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
            return answers.transport_failure(e, cut=watch.cut, deadline=self._deadline, where=self.where)
        finally:
            watch.done = True
            transport.CURRENT.watch = None

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

    @contextlib.contextmanager
    def stopping(self, stop: threading.Event | None) -> Iterator[None]:
        """Calls this thread makes inside give up waiting (for a slot, or between the tries
        of a lookup) once ``stop`` is set, answering :attr:`Kind.STOPPED` unsent."""
        before = getattr(self._local, "stop", None)
        self._local.stop = stop
        try:
            yield
        finally:
            self._local.stop = before

    def _stop(self) -> threading.Event:
        stop: threading.Event | None = getattr(self._local, "stop", None)
        return stop if stop is not None else self._never

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

        ``op`` is ``trigger``, ``log`` or ``lookup``: 62109 means "unknown" for a trigger (the
        exception may come after the instance was made), "no log" for a log and "retry" for
        a lookup. Each try waits for a slot of :attr:`limiter`; once :attr:`stopped` is set,
        the answer is :attr:`Kind.STOPPED` and nothing is sent.
        """
        body = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else None
        full = {**params, "userId": self.user_id, "orgId": self.org_id} if identity else params
        name = f"{path.rsplit('/', 1)[-1]}.{params.get('action', '')}"
        answer = Answer(Kind.AUTH, None, "not sent")
        for attempt in range(2):
            token = self.token(force=attempt > 0) if self.stopped is None else ""
            slot = self.limiter.take(self._stop()) if self.stopped is None else None
            if self.stopped is not None:  # perhaps set by another thread while this one waited
                return Answer(Kind.STOPPED, None, self.stopped)
            if slot is None:
                return Answer(Kind.STOPPED, None, STOPPED_WAITING)
            ts = self._clock.next()
            headers = {
                "apim-accesstoken": token,
                "apim-timestamp": str(ts),
                "apim-signature": self._creds.sign(token, full, body, ts),
            }
            with self._calls_lock:
                self.calls[name] = self.calls.get(name, 0) + 1
            sent = self._send(method, path, full, body, headers)
            answer = self._paced(sent if isinstance(sent, Answer) else self._classify(sent, op), slot)
            if answer.kind is not Kind.AUTH:
                return answer
        return answer

    def _paced(self, answer: Answer, slot: Slot) -> Answer:
        """Feed an answer back to the limiter (a 429 lowers the rate) and to the refusal
        watch (which may set :attr:`stopped`); the answer, marked ``adapting`` when a 429
        lowered a rate that was above its floor."""
        status = answer.http_status
        adapting = False
        if status == 429:
            hold = None if answer.retry_after is None else min(answer.retry_after, HOLD_CAP)
            adapting = self.limiter.throttled(slot, hold)
        elif status == 200:
            self.limiter.succeeded(slot)
        why = self._refusals.seen(status, at_floor=status == 429 and not adapting)
        if why is not None and self.stopped is None:
            self.stopped = why
            self._log.warning("stopped sending", reason=why)
        return dataclasses.replace(answer, adapting=True) if adapting else answer

    def trigger(self, flow_id: int, trigger_time: int) -> Answer:
        """Trigger Flow (the seed API)."""
        return self.call(
            "POST",
            self.api.flows,
            {"action": "trigger"},
            {"flowId": flow_id, "triggerTime": trigger_time},
            "trigger",
        )

    def update_and_trigger(
        self, flow_id: int, trigger_time: int, parameters: Mapping[str, str]
    ) -> Answer:
        """Update And Trigger Flow: Trigger Flow with global parameters for this instance
        only, sent in the list form of the vendor's sample; classified like :meth:`trigger`."""
        listed = [{"key": k, "value": v} for k, v in parameters.items()]
        return self.call(
            "POST",
            self.api.flows,
            {"action": "updateAndTrigger"},
            {"flowId": flow_id, "triggerTime": trigger_time, "parameters": listed},
            "trigger",
        )

    def get_instance(self, flow_inst_id: str) -> Answer:
        """Get Flow Instance by id (retried while retryable); its id and status checked. A
        ``data`` that is a one-element list (the newest vendor page) is read as its element."""
        got = self._lookup_call(
            "GET", self.api.instances, {"action": "get", "flowInstId": flow_inst_id}, None
        )
        data = got.data
        if isinstance(data, list):
            data = data[0] if len(data) == 1 else None
        if got.kind is Kind.OK and (isinstance(data, dict) or data is not got.data):
            got = dataclasses.replace(got, data=self.checked_instance(data))
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
        """Get Flow (read it with :func:`protocol.read_flow`)."""
        return self._lookup_call(
            "GET", self.api.flows, {"action": "get", "flowId": str(flow_id)}, None
        )

    def get_task_log(self, task_inst_id: str, max_length: int) -> Answer:
        """Get Task Instance Log: ``data`` is ``{"log": "..."}`` (the service's text: clean it
        before showing it). 62102 (no such instance) and 62109 (no log) are final answers."""
        params = {"action": "getLog", "taskInstId": task_inst_id, "maxLength": str(max_length)}
        return self._lookup_call("GET", self.api.task_instances, params, None, op="log")

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
        op: str = "lookup",
    ) -> Answer:
        """A read-only call, retried with backoff and full jitter on 503, 62109, 5xx and
        connection errors (reading twice is harmless). A 429 is not counted as a try: the
        limiter paces the next one, until the gateway has answered only 429 long enough to
        stop the client (then the answer is :attr:`Kind.STOPPED`), at most
        :data:`THROTTLED_TRIES` times."""
        answer = Answer(Kind.UNKNOWN, None, "not sent")
        tries = throttled = 0
        while tries < self._lookup_tries:
            answer = self.call(method, path, params, payload, op, identity=identity)
            if answer.kind not in (Kind.RETRYABLE, Kind.UNKNOWN):
                return answer
            if answer.http_status == 429 and throttled < THROTTLED_TRIES:
                throttled += 1
                continue
            tries += 1
            wait = backoff(tries - 1, LOOKUP_BACKOFF_BASE, self._lookup_cap, answer.retry_after)
            if tries < self._lookup_tries and self._stop().wait(wait):
                break
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
        """:func:`answers.classify`, the service's text cleaned by :meth:`clean`."""
        return answers.classify(resp, op, self.clean)

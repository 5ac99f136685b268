"""A faithful local simulator of the EnOS API gateway and Data Flow batch service.

A real HTTP/1.1 server on loopback (keep-alive, Nagle off) that checks tokens and
signatures over the exact bytes it receives, creates and schedules flow instances, answers
lookups, rate-limits with 429, and injects faults on triggers. ``GET /__sim__/triggers``
lists every trigger request it received, in arrival order: the record tests hold
"exactly once" against.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import secrets
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from planrunner import enos

FAULT_KINDS = ("62109", "503", "504-after-create", "drop-after-create", "malformed", "lookup-503")
LOOKUP_FAULTS = ("lookup-503",)  # applied to Get and Search Flow Instances, as a rate
# The gateway's own answers, injected before the service sees the request (nothing created).
GATEWAY_STATUSES = (400, 401, 403, 413, 429, 500, 502, 503, 504)


def _known_fault(kind: str) -> bool:
    return kind in FAULT_KINDS or (
        kind.startswith("http-") and kind[5:].isdigit() and int(kind[5:]) in GATEWAY_STATUSES
    )


INIT, WAIT, RUNNING, SUCCESS = 0, 5, 2, 1
DEFAULT_RUN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class SimFlow:
    """A flow the simulator knows: who owns it and how it behaves."""

    flow_id: int
    owner: str | None = None  # None: any user (a flow the fixture did not list)
    org_id: str | None = None
    locked: bool = False
    has_task: bool = True
    run_seconds: float = DEFAULT_RUN_SECONDS


@dataclass(slots=True)
class Instance:
    """A flow instance and its schedule, from which its status follows."""

    instance_id: str
    flow_id: int
    trigger_time: int
    created: float
    start: float
    end: float

    def status(self, now: float) -> int:
        """INIT -> WAIT -> RUNNING -> SUCCESS as time passes."""
        if now < self.created + 0.05:
            return INIT
        if now < self.start:
            return WAIT
        if now < self.end:
            return RUNNING
        return SUCCESS

    def as_dict(self, now: float) -> dict[str, Any]:
        """The instance as lookups return it."""
        return {
            "instanceId": self.instance_id,
            "flowId": self.flow_id,
            "status": self.status(now),
            "triggerTime": self.trigger_time,
            "startTime": int(self.start * 1000),
            "endTime": int(self.end * 1000) if now >= self.end else None,
        }


@dataclass
class Faults:
    """Fault injection on triggers: each kind a rate (0..1, seeded) or a schedule of request numbers."""

    rates: dict[str, float] = field(default_factory=dict)
    schedule: dict[str, set[int]] = field(default_factory=dict)
    latency: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for kind in (*self.rates, *self.schedule):
            if not _known_fault(kind):
                known = ", ".join((*FAULT_KINDS, "http-NNN"))
                raise ValueError(f"unknown fault {kind!r} (known: {known})")
        self._rng = random.Random(self.seed)

    @classmethod
    def parse(cls, specs: list[str], latency: float = 0.0, seed: int = 0) -> Faults:
        """Read ``KIND=RATE`` (e.g. ``503=0.1``) and ``KIND@N,M`` (the Nth and Mth triggers)."""
        rates: dict[str, float] = {}
        schedule: dict[str, set[int]] = {}
        for spec in specs:
            if "@" in spec:
                kind, _, nums = spec.partition("@")
                try:
                    schedule[kind] = {int(n) for n in nums.split(",") if n}
                except ValueError:
                    raise ValueError(f"bad fault schedule {spec!r} (want KIND@N,M)") from None
            else:
                kind, _, rate = spec.partition("=")
                try:
                    value = float(rate)
                except ValueError:
                    raise ValueError(f"bad fault {spec!r} (want KIND=RATE or KIND@N,M)") from None
                if not 0 <= value <= 1:
                    raise ValueError(f"fault rate must be within 0..1: {spec!r}")
                rates[kind] = value
        return cls(rates, schedule, latency, seed)

    def pick(self, number: int) -> str | None:
        """The fault for trigger request ``number`` (1-based), if any."""
        for kind, numbers in self.schedule.items():
            if number in numbers and kind not in LOOKUP_FAULTS:
                return kind
        for kind, rate in self.rates.items():
            if rate and kind not in LOOKUP_FAULTS and self._rng.random() < rate:
                return kind
        return None

    def lookup_fails(self) -> bool:
        """Whether this instance lookup is answered 503."""
        rate = self.rates.get("lookup-503", 0.0)
        return bool(rate) and self._rng.random() < rate


class State:
    """Everything the simulated service knows; one lock guards it."""

    def __init__(
        self,
        flows: Mapping[int, SimFlow],
        access_key: str,
        secret_key: str,
        faults: Faults,
        rate_limit: float | None,
        token_ttl: int,
    ) -> None:
        self.flows = dict(flows)
        self.access_key = access_key
        self.secret_key = secret_key
        self.faults = faults
        self.rate_limit = rate_limit
        self.token_ttl = token_ttl
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.seen_encryptions: set[str] = set()
        self.instances: dict[str, Instance] = {}
        self.flow_busy_until: dict[int, float] = {}
        self.triggers: list[dict[str, Any]] = []
        self.token_log: list[tuple[str, int]] = []  # (path, status) of every token request
        self.trigger_count = 0
        self.requests = 0
        self._bucket = rate_limit or 0.0
        self._bucket_at = time.monotonic()

    def revoke_tokens(self) -> None:
        """Forget every issued token (as after a gateway restart): the next call gets 401."""
        with self.lock:
            self.tokens.clear()

    def flow(self, flow_id: int) -> SimFlow:
        """A listed flow, or the permissive default for one that is not."""
        return self.flows.get(flow_id) or SimFlow(flow_id)

    def admit(self) -> float | None:
        """Token-bucket rate limit; seconds to wait when over the limit, else None."""
        if not self.rate_limit:
            return None
        with self.lock:
            now = time.monotonic()
            self._bucket = min(
                self.rate_limit, self._bucket + (now - self._bucket_at) * self.rate_limit
            )
            self._bucket_at = now
            if self._bucket >= 1:
                self._bucket -= 1
                return None
            return (1 - self._bucket) / self.rate_limit

    def create(self, flow: SimFlow, trigger_time: int) -> Instance | None:
        """A new instance, or None when one exists for this flow and minute (62102)."""
        iid = enos.instance_id(flow.flow_id, trigger_time)
        if iid in self.instances:
            return None
        now = time.time()
        # Past trigger times run at once; future ones wait for their time. One at a time.
        start = max(now, trigger_time / 1000, self.flow_busy_until.get(flow.flow_id, 0.0))
        inst = Instance(iid, flow.flow_id, trigger_time, now, start, start + flow.run_seconds)
        self.flow_busy_until[flow.flow_id] = inst.end
        self.instances[iid] = inst
        return inst


def _answer(status: int, msg: str, data: Any = None) -> dict[str, Any]:
    return {"status": status, "msg": msg, "data": data}


class _Dropped(Exception):
    """Close the connection without answering."""


class Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # without it keep-alive clients crawl at ~23 req/s
    server: SimServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the simulator's record is /__sim__/triggers

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1_000_000:
            self._send_raw(413, b"request entity too large")
            return
        body = self.rfile.read(length) if length else b""
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            if parts.path == "/__sim__/triggers" and method == "GET":
                with state.lock:
                    self._send_json(200, {"triggers": list(state.triggers)})
                return
            with state.lock:
                state.requests += 1
            wait = state.admit()
            if wait is not None:
                self._send_raw(
                    429, b"rate limit exceeded", {"Retry-After": str(max(1, math.ceil(wait)))}
                )
                return
            if parts.path in (enos.TOKEN_GET_PATH, enos.TOKEN_REFRESH_PATH) and method == "POST":
                answer = self._token(parts.path, body)
                with state.lock:
                    state.token_log.append((parts.path, answer["status"]))
                self._send_json(200, answer)
                return
            if parts.path == enos.TRIGGER_PATH and method == "POST":
                if self._authed(params, body):
                    self._trigger(params, body)
                return
            if parts.path == enos.INSTANCES_PATH:
                if self._authed(params, body):
                    self._instances(method, params, body)
                return
            self._send_raw(404, b"not found")
        except _Dropped:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    # -- gateway ----------------------------------------------------------------------

    def _token(self, path: str, body: bytes) -> dict[str, Any]:
        state = self.server.state
        try:
            req = json.loads(body)
        except ValueError:
            return _answer(1004, "invalid parameter")
        if not isinstance(req, dict):
            return _answer(1004, "invalid parameter")
        key, enc, ts = req.get("appKey"), req.get("encryption"), req.get("timestamp")
        if not key or not enc or ts in (None, ""):
            return _answer(1202, "empty parameter")
        if not isinstance(ts, int) or not isinstance(key, str) or not isinstance(enc, str):
            return _answer(1004, "invalid parameter")
        if key != state.access_key:
            return _answer(1002, "appKey does not exist")
        if enc != enos.token_encryption(key, ts, state.secret_key):
            return _answer(1003, "encryption not valid")
        with state.lock:
            if enc in state.seen_encryptions:
                return _answer(1001, "repeated encryption")
            state.seen_encryptions.add(enc)
            if path == enos.TOKEN_REFRESH_PATH:
                old = req.get("accessToken")
                if not isinstance(old, str) or old not in state.tokens:
                    return _answer(1204, "refresh failed")
                if state.tokens[old] < time.monotonic():
                    return _answer(1203, "token expired")
            token = secrets.token_hex(16)
            state.tokens[token] = time.monotonic() + state.token_ttl
        return _answer(0, "SUCCESS", {"accessToken": token, "expire": state.token_ttl})

    def _authed(self, params: dict[str, str], body: bytes) -> bool:
        state = self.server.state
        token = self.headers.get("apim-accesstoken") or ""
        ts_text = self.headers.get("apim-timestamp") or ""
        sig = self.headers.get("apim-signature") or ""
        with state.lock:
            expiry = state.tokens.get(token)
        if expiry is None:
            self._send_json(401, _answer(401, "Unauthorized: unknown access token"))
            return False
        if expiry < time.monotonic():
            self._send_json(401, _answer(1203, "token expired"))
            return False
        try:
            ts = int(ts_text)
        except ValueError:
            self._send_json(401, _answer(401, "Unauthorized: bad apim-timestamp"))
            return False
        if abs(ts - time.time() * 1000) > 15 * 60 * 1000:
            self._send_json(401, _answer(401, "Unauthorized: apim-timestamp too far from now"))
            return False
        expected = enos.signature(token, params, body or None, ts, state.secret_key)
        if not secrets.compare_digest(sig, expected):
            self._send_json(401, _answer(401, "Unauthorized: signature invalid"))
            return False
        return True

    # -- service ----------------------------------------------------------------------

    def _trigger(self, params: dict[str, str], body: bytes) -> None:
        state = self.server.state
        try:
            req = json.loads(body)
            flow_id, trigger_time = req["flowId"], req["triggerTime"]
            if (
                params.get("action") != "trigger"
                or not isinstance(flow_id, int)
                or not isinstance(trigger_time, int)
            ):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self._send_raw(400, b"bad request")
            return
        user, org = params.get("userId", ""), params.get("orgId", "")
        flow = state.flow(flow_id)
        with state.lock:
            state.trigger_count += 1
            number = state.trigger_count
        fault = state.faults.pick(number)
        if state.faults.latency:
            time.sleep(state.faults.latency)
        if fault is not None and fault.startswith("http-"):
            # The gateway answers by itself; the service never sees the trigger.
            self._send_raw(
                int(fault[5:]), f"gateway says {fault[5:]}".encode(), {"Retry-After": "0"}
            )
            return
        record: dict[str, Any] = {
            "flowId": flow_id,
            "triggerTime": trigger_time,
            "userId": user,
            "orgId": org,
            "status": None,
            "flowInstanceId": None,
        }
        answer: dict[str, Any]
        http = 200
        with state.lock:
            if fault in ("62109", "503"):
                answer = _answer(62109, "Server internal exception")
                http = 503 if fault == "503" else 200
            elif (flow.org_id is not None and flow.org_id != org) or not user:
                answer = _answer(62101, "userId does not exist or does not match orgId")
            elif flow.owner is not None and flow.owner != user:
                answer = _answer(62103, "User has no privilege to trigger this flow")
            elif flow.locked:
                answer = _answer(62103, "The flow or its owner is locked")
            elif not flow.has_task:
                answer = _answer(62104, "This workflow has no task, you cannot trigger it!")
            else:
                inst = state.create(flow, trigger_time)
                if inst is None:
                    answer = _answer(
                        62102,
                        "Cannot create instance: the flow was triggered within the same minute",
                    )
                else:
                    record["flowInstanceId"] = inst.instance_id
                    answer = _answer(0, " Success", {"flowInstanceId": inst.instance_id})
            created = record["flowInstanceId"] is not None
            if created and fault == "504-after-create":
                http = 504
            record["status"] = (
                http
                if http != 200
                else -1
                if created and fault == "drop-after-create"
                else 200
                if created and fault == "malformed"
                else answer["status"]
            )
            state.triggers.append(record)
        if created and fault == "drop-after-create":
            raise _Dropped
        if created and fault == "malformed":
            self._send_raw(200, b'{"status": 0, "msg": " Success", "data": {"flowInst')
        elif http == 503:
            self._send_raw(503, b"service unavailable", {"Retry-After": "0"})
        elif http == 504:
            self._send_raw(504, b"gateway timeout")
        else:
            self._send_json(200, answer)

    def _instances(self, method: str, params: dict[str, str], body: bytes) -> None:
        state = self.server.state
        action = params.get("action")
        now = time.time()
        with state.lock:
            failing = state.faults.lookup_fails()
        if failing:
            self._send_raw(503, b"service unavailable", {"Retry-After": "0"})
            return
        if method == "GET" and action == "get":
            with state.lock:
                inst = state.instances.get(params.get("flowInstId", ""))
                data = inst.as_dict(now) if inst else None
            if data is None:
                self._send_json(200, _answer(62102, "Flow instance not found"))
            else:
                self._send_json(200, _answer(0, "Success", data))
            return
        if method == "POST" and action == "search":
            try:
                req = json.loads(body)
                lo, hi = int(req["fromTriggerTime"]), int(req["toTriggerTime"])
                expression = str(req.get("expression") or "")
                wanted = {
                    int(s)
                    for s in str(req.get("status", enos.ALL_STATUSES)).split(",")
                    if s.strip()
                }
                page = req.get("pagination") or {}
                page_no, page_size = int(page.get("pageNo", 0)), int(page.get("pageSize", 100))
            except (ValueError, KeyError, TypeError):
                self._send_raw(400, b"bad request")
                return
            with state.lock:
                hits = [
                    i.as_dict(now)
                    for i in state.instances.values()
                    if lo <= i.trigger_time <= hi
                    and expression in str(i.flow_id)
                    and i.status(now) in wanted
                ]
            hits.sort(key=lambda d: (d["triggerTime"], d["flowId"]))
            chunk = hits[page_no * page_size : (page_no + 1) * page_size] if page_size > 0 else []
            self._send_json(200, _answer(0, "Success", {"flowInsts": chunk, "count": len(hits)}))
            return
        self._send_raw(400, b"bad request")

    # -- plumbing -----------------------------------------------------------------------

    def _send_json(self, status: int, doc: Mapping[str, Any]) -> None:
        self._send_raw(status, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    def _send_raw(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class SimServer(ThreadingHTTPServer):
    """The HTTP server, carrying the simulated state."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: State) -> None:
        super().__init__(address, Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a killed apply) is normal here, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

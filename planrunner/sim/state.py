"""What one simulator holds, and the order a request goes through.

Rate limit (HTTP 429), then the gateway (token, signature), then injected faults, then the
service's rules. Every trigger request whose body names a flow and a time is recorded in
:attr:`State.triggers`, in arrival order, with the status it was answered: the record tests
hold "exactly once" against.
"""

from __future__ import annotations

import enum
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from planrunner.sim.faults import (
    THEN_CREATE_FAULTS,
    Dialect,
    Faults,
    creates_first,
    gateway_status,
    hostile_text,
    status_after_create,
)
from planrunner.sim.gateway import Gateway
from planrunner.sim.quota import Quota, Quotas
from planrunner.sim.reply import DROP, JSON_TYPE, Reply, poison, text_reply, with_log
from planrunner.sim.service import Instance, Service, SimFlow

HTTP_TOO_MANY = 429
HTTP_UNAVAILABLE = 503
HTTP_GATEWAY_TIMEOUT = 504
RETRY_AFTER_FAULT = "0"  # seconds, on an injected 503 when the dialect sends Retry-After
MIN_RETRY_AFTER = 1  # seconds, on a rate-limit 429 when the dialect sends Retry-After


class Route(enum.Enum):
    """What a request asks for, as the HTTP layer routed it."""

    TOKEN_GET = "token-get"  # noqa: S105 - a route name
    TOKEN_REFRESH = "token-refresh"  # noqa: S105 - a route name
    TRIGGER = "trigger"
    UPDATE_AND_TRIGGER = "update-and-trigger"
    TASK_LOG = "task-log"
    GET_FLOW = "get-flow"
    GET_INSTANCE = "get-instance"
    SEARCH = "search"
    CANCEL = "cancel"
    TIME_ZONE = "time-zone"
    CURRENT_TIME = "current-time"
    UNKNOWN_ACTION = "unknown-action"  # a service path with an action it does not have


@dataclass(frozen=True, slots=True)
class Incoming:
    """One request as received: decoded query, lower-cased header names, exact body bytes."""

    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


TRIGGERS = (Route.TRIGGER, Route.UPDATE_AND_TRIGGER)
TOKENS = (Route.TOKEN_GET, Route.TOKEN_REFRESH)
BAD_PARAMETERS = "bad"  # Update And Trigger parameters in a form the service refuses


class State:
    """The gateway, the service, faults, the rate limiter, the quotas and the trigger log."""

    def __init__(
        self,
        flows: Iterable[SimFlow],
        access_key: str,
        secret_key: str,
        faults: Faults,
        rate_limit: float | None,
        token_ttl: int,
        dialect: Dialect,
        *,
        quotas: Iterable[Quota] = (),
        accept_unknown_flows: bool = False,
    ) -> None:
        self.dialect = dialect
        self.faults = faults
        self.rate_limit = rate_limit
        self.quotas = Quotas(quotas)
        self.service = Service(
            flows, dialect, seed=faults.seed, accept_unknown_flows=accept_unknown_flows
        )
        self.gateway = Gateway(access_key, secret_key, token_ttl, dialect)
        self.triggers: list[dict[str, Any]] = []
        self.secret_key = secret_key
        self._busy = 0  # triggers still being processed, here or by a backend timer
        self._idle = threading.Condition()
        self.trigger_count = 0  # trigger requests that reached fault injection
        self.lookup_count = 0  # Get/Search requests that reached fault injection
        self.requests = 0
        self._bucket = rate_limit or 0.0
        self._bucket_at = time.monotonic()
        self._bucket_lock = threading.Lock()
        self._handlers: dict[Route, Callable[[Incoming], Reply]] = {
            Route.GET_FLOW: lambda r: self.service.get_flow(r.params),
            Route.GET_INSTANCE: lambda r: self.service.get_instance(r.params),
            Route.SEARCH: lambda r: self.service.search(r.params, r.body),
            Route.CANCEL: lambda r: self.service.cancel(r.params, r.body),
            Route.TIME_ZONE: lambda r: self.service.time_zone(),
            Route.TASK_LOG: lambda r: self.service.task_log(r.params),
            Route.CURRENT_TIME: lambda r: self.service.current_time(),
            Route.UNKNOWN_ACTION: lambda r: self.service.bad_request(),
        }

    # -- for tests -------------------------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """The one lock guarding the service's instances and the trigger log."""
        return self.service.lock

    @property
    def instances(self) -> dict[str, Instance]:
        """Instance id -> the newest instance with that id."""
        return self.service.instances

    @property
    def token_log(self) -> list[tuple[str, int]]:
        """``(path, code)`` of every token request, in order."""
        return self.gateway.token_log

    def revoke_tokens(self) -> None:
        """Forget every issued token (as after a gateway restart)."""
        self.gateway.revoke_tokens()

    def flow(self, flow_id: int) -> SimFlow | None:
        """A listed flow, the permissive default for one that is not when unknown flows are
        accepted, else None."""
        return self.service.flow(flow_id)

    def settle(self, timeout: float) -> bool:
        """Wait until no trigger is still being processed (slow service, backend timers);
        False if some still are after ``timeout`` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _enter(self) -> None:
        with self._idle:
            self._busy += 1

    def _leave(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def trigger_log(self) -> list[dict[str, Any]]:
        """A copy of the trigger log."""
        with self.lock:
            return [dict(t) for t in self.triggers]

    # -- the pipeline ----------------------------------------------------------------------

    def _retry_after(self, seconds: str) -> tuple[tuple[str, str], ...]:
        return (("Retry-After", seconds),) if self.dialect.retry_after else ()

    def admit(self, route: Route | None = None) -> Reply | None:
        """The gateway's limits: None when admitted, else its 429. The token bucket
        (``--rate-limit``) takes every request; the quotas count every signed call."""
        limited = self._bucket_admit()
        if limited is not None or route is None or route in TOKENS:
            return limited
        if not self.quotas.admit():
            return text_reply(HTTP_TOO_MANY, "API rate limit exceeded")
        return None

    def _bucket_admit(self) -> Reply | None:
        if not self.rate_limit:
            return None
        with self._bucket_lock:
            now = time.monotonic()
            self._bucket = min(
                self.rate_limit, self._bucket + (now - self._bucket_at) * self.rate_limit
            )
            self._bucket_at = now
            if self._bucket >= 1:
                self._bucket -= 1
                return None
            wait = (1 - self._bucket) / self.rate_limit
        seconds = str(max(MIN_RETRY_AFTER, math.ceil(wait)))
        return text_reply(HTTP_TOO_MANY, "too many requests", self._retry_after(seconds))

    def handle(self, route: Route, req: Incoming) -> Reply:
        """Answer ``req``, routed to ``route`` (made hostile if the dialect says so)."""
        reply = self._handle(route, req)
        if not self.dialect.hostile or not isinstance(reply.body, dict):
            return reply
        token = req.headers.get("apim-accesstoken", "")
        data = reply.body.get("data")
        if not token and isinstance(data, dict) and isinstance(data.get("accessToken"), str):
            token = data["accessToken"]
        long = hostile_text(token, self.secret_key)
        short = hostile_text(token, self.secret_key, padding=0)
        return Reply(reply.status, poison(reply.body, long, short), reply.headers, reply.drop, reply.log)

    def _unpoisoned(self, req: Incoming) -> Incoming:
        """A hostile dialect's instance id, as a client sends it back, read as the real id."""
        iid = req.params.get("flowInstId")
        if not self.dialect.hostile or iid is None or "\x1b" not in iid:
            return req
        params = {**req.params, "flowInstId": iid.split("\x1b", 1)[0]}
        return Incoming(req.path, params, req.headers, req.body)

    def _handle(self, route: Route, req: Incoming) -> Reply:
        with self.lock:
            self.requests += 1
        if route in TRIGGERS:
            return self._trigger(req, route)
        limited = self.admit(route)
        if limited is not None:
            return limited
        if route in TOKENS:
            return self.gateway.token(req.path, req.body)
        refused = self.gateway.check(req.headers, req.params, req.body)
        if refused is not None:
            return refused
        if route in (Route.GET_INSTANCE, Route.SEARCH):
            fault = self._lookup_fault()
            if fault is not None:
                return fault
        return self._handlers[route](self._unpoisoned(req))

    def _lookup_fault(self) -> Reply | None:
        with self.lock:
            self.lookup_count += 1
            kind = self.faults.pick_lookup(self.lookup_count)
        if kind == "lookup-503":
            return text_reply(
                HTTP_UNAVAILABLE, "service unavailable", self._retry_after(RETRY_AFTER_FAULT)
            )
        if kind == "lookup-62109":
            return self.service.server_error()
        if kind == "lookup-drop":
            return DROP
        return None

    def _trigger(self, req: Incoming, route: Route) -> Reply:
        self._enter()
        try:
            return self._trigger_now(req, route)
        finally:
            self._leave()

    def _parameters(self, req: Incoming, route: Route) -> dict[str, str] | str | None:
        """Update And Trigger's parameters, :data:`BAD_PARAMETERS` when in a form the
        dialect refuses; None for a plain trigger."""
        if route is not Route.UPDATE_AND_TRIGGER:
            return None
        found = Service.parse_parameters(req.body, self.dialect.parameters)
        return BAD_PARAMETERS if found is None else found

    def _create(
        self, req: Incoming, parsed: tuple[int, int], parameters: dict[str, str] | str | None
    ) -> tuple[Reply, Instance | None]:
        """The service's answer to the trigger (the caller holds the lock)."""
        if isinstance(parameters, str):
            return self.service.bad_request(), None
        user, org = req.params.get("userId", ""), req.params.get("orgId", "")
        return self.service.trigger(user, org, *parsed, parameters)

    def _trigger_now(self, req: Incoming, route: Route) -> Reply:
        parsed = Service.parse_trigger(req.body)
        parameters = self._parameters(req, route) if parsed is not None else None
        early = self._before_service(req, parsed, route)
        if isinstance(early, Reply) or parsed is None:
            answer = early if isinstance(early, Reply) else self.service.bad_request()
            return self._log(req, parsed, answer, None, parameters)
        if early in THEN_CREATE_FAULTS:
            answer = DROP if early == "drop-then-create" else text_reply(
                HTTP_GATEWAY_TIMEOUT, "gateway timeout"
            )
            answer = self._log(req, parsed, answer, None, parameters)
            assert answer.log is not None
            self._backend_later(req, parsed, parameters, answer.log)
            return answer
        if self.faults.processing:
            time.sleep(self.faults.processing)  # the instance is created when this ends
        # Creating the instance and logging it are one step: the log never lags an instance.
        with self.lock:
            reply, inst = self._create(req, parsed, parameters)
            if inst is not None and creates_first(early):
                assert early is not None
                reply = self._after_create(early, reply)
            return self._log(req, parsed, reply, inst, parameters)

    def _backend_later(
        self,
        req: Incoming,
        parsed: tuple[int, int],
        parameters: dict[str, str] | str | None,
        record: dict[str, Any],
    ) -> None:
        """The backend creates the instance ``backend_delay`` seconds after the gateway gave up."""

        def create() -> None:
            try:
                with self.lock:
                    _, inst = self._create(req, parsed, parameters)
                    if inst is not None:
                        record["flowInstanceId"] = inst.instance_id
            finally:
                self._leave()

        self._enter()
        timer = threading.Timer(self.faults.backend_delay, create)
        timer.daemon = True
        timer.start()

    def _log(
        self,
        req: Incoming,
        parsed: tuple[int, int] | None,
        reply: Reply,
        inst: Instance | None,
        parameters: dict[str, str] | str | None,
    ) -> Reply:
        """Append to the trigger log (a body that names no flow and time is not logged);
        ``reply`` tied to its record."""
        if parsed is None:
            return reply
        record = {
            "flowId": parsed[0],
            "triggerTime": parsed[1],
            "userId": req.params.get("userId", ""),
            "orgId": req.params.get("orgId", ""),
            "status": reply.log_status,
            "flowInstanceId": inst.instance_id if inst is not None else None,
            "answered": not reply.drop,
            "parameters": dict(parameters) if isinstance(parameters, dict) else None,
        }
        with self.lock:
            self.triggers.append(record)
        return with_log(reply, record)

    def _before_service(
        self, req: Incoming, parsed: tuple[int, int] | None, route: Route
    ) -> Reply | str | None:
        """The answer given before the service sees the trigger, else the fault kind to apply."""
        limited = self.admit(route)
        if limited is not None:
            return limited
        refused = self.gateway.check(req.headers, req.params, req.body)
        if refused is not None:
            return refused
        if parsed is None:
            return None
        with self.lock:
            self.trigger_count += 1
            fault = self.faults.pick(self.trigger_count)
        if self.faults.latency:
            time.sleep(self.faults.latency)
        status = gateway_status(fault) if fault is not None else None
        if status is not None:
            # The gateway answers by itself; the service never sees the trigger.
            retry = status in (HTTP_TOO_MANY, HTTP_UNAVAILABLE)
            headers = self._retry_after(RETRY_AFTER_FAULT) if retry else ()
            return text_reply(status, f"gateway says {status}", headers)
        if fault == "62109":
            return self.service.server_error()
        if fault == "62102":
            return self.service.bad_request()
        if fault == "503":
            retry_after = self._retry_after(RETRY_AFTER_FAULT)
            return text_reply(HTTP_UNAVAILABLE, "service unavailable", retry_after)
        return fault

    def _after_create(self, fault: str, reply: Reply) -> Reply:
        """The answer of a fault that strikes after the instance was created."""
        if fault == "62109-after-create":
            return self.service.server_error()
        status = status_after_create(fault)
        if status == HTTP_GATEWAY_TIMEOUT:
            return text_reply(status, "gateway timeout")
        if status is not None:
            return text_reply(status, f"error {status}: the origin did not answer in time")
        if fault == "drop-after-create":
            return DROP
        whole = json.dumps(reply.body).encode()  # "malformed": the answer, cut in half
        return Reply(reply.status, whole[: len(whole) // 2], (("Content-Type", JSON_TYPE),))

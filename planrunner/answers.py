"""What an answer from the service means: its :class:`Kind` (what the engine must do with
it), the classified :class:`Answer` (:func:`classify`, the answer table of docs/apply.md),
and a :class:`Lookup`'s verdict. The client (:mod:`planrunner.enos`) makes them; lookup and
the engines read them."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from planrunner import protocol, transport

INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # {flowId}-{digits}, with room
STATUS_TEXT_LIMIT = 32  # characters of an unknown instance status shown
# HTTP statuses the gateway answers before the service acts: a definite refusal.
GATEWAY_REFUSALS = protocol.PERMANENT_HTTP | {404, 405, 414, 431}
NOT_FOUND_HINT = " (wrong target.api? run planrunner doctor)"


class Kind(enum.Enum):
    """What an answer means for the entry it was about."""

    OK = "ok"  # code 0
    PERMANENT = "permanent"  # a definite refusal: record failed, never retry
    DUPLICATE = "duplicate"  # 62102 on Trigger: maybe an instance for the minute exists
    RETRYABLE = "retryable"  # nothing was created: back off and send again
    UNKNOWN = "unknown"  # the request may have been acted on: look it up before re-sending
    AUTH = "auth"  # 401, a token error, or an auth failure in a 200 body
    FATAL = "fatal"  # the gateway cannot be talked to safely (TLS): stop the run
    # Never left: the client stopped (gateway quota exhausted, or the gateway refuses this
    # client), or the caller's stop was set while the call waited for its slot.
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Answer:
    """One classified answer. ``code`` is the service code, else the HTTP status."""

    kind: Kind
    code: int | None
    msg: str
    data: Any = None
    retry_after: float | None = None
    http_status: int | None = None
    # A 429 met while the shared rate was still adapting (above its floor): the rate was
    # lowered, and the 429 is no failure of the entry (it must not spend its retries).
    adapting: bool = False

    @property
    def flow_instance_id(self) -> str | None:
        """The instance id of a successful trigger (None when it has not the shape of one)."""
        if isinstance(self.data, dict):
            value = self.data.get("flowInstanceId")
            return value if isinstance(value, str) and INSTANCE_ID.fullmatch(value) else None
        return None


@dataclass(frozen=True, slots=True)
class Lookup:
    """Whether an instance for a trigger exists: True, False, or None when unknown."""

    found: bool | None
    flow_instance_id: str | None
    reason: str = ""


def code_text(answer: Answer) -> str:
    """`` (code N)`` when the answer has a code; nothing otherwise (never "None")."""
    return f" (code {answer.code})" if answer.code is not None else ""


def describe(answer: Answer, msg: str | None = None) -> str:
    """``CODE: message``, or the message alone when there is no code."""
    text = answer.msg if msg is None else msg
    return f"{answer.code}: {text}" if answer.code is not None else text


def checked_id(value: object, clean: Callable[[str], str]) -> str | None:
    """An instance id from the service, or None when it has not the shape of one
    (``{flowId}-{digits}``-like, at most 100 characters) or holds a credential (``clean``
    changes it)."""
    if not isinstance(value, str) or not INSTANCE_ID.fullmatch(value):
        return None
    return value if clean(value) == value else None


def checked_status(value: object, clean: Callable[[str, int], str]) -> int | str | None:
    """An instance status: a known code as is; anything else as short, cleaned text."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in protocol.STATUS_NAMES:
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,3}", value.strip()):
        code = int(value)
        if code in protocol.STATUS_NAMES:
            return code
    text = value if isinstance(value, str) else json.dumps(value)[: STATUS_TEXT_LIMIT * 4]
    return clean(" ".join(text.split()), STATUS_TEXT_LIMIT) or "?"


def classify(resp: transport.Reply, op: str, clean: Callable[[str], str]) -> Answer:
    """The answer table of docs/apply.md, for an HTTP answer to an ``op`` call.

    Only a documented refusal is definite: 401 (auth), 429 and 503 (nothing done, retry),
    the gateway's own refusals (:data:`protocol.PERMANENT_HTTP`, 404, 405, 414, 431) and
    the service's codes. Any other status (every other 5xx, 3xx, other 4xx) and any body
    that is not a service envelope may come after the request was acted on: unknown.
    ``clean`` makes the service's text safe to keep.
    """
    status = resp.status
    if status == 401:
        return Answer(Kind.AUTH, 401, "HTTP 401 (token or signature refused)", http_status=401)
    if status in (429, 503):
        after = transport.retry_after(resp.retry_after)
        return Answer(Kind.RETRYABLE, status, f"HTTP {status}", retry_after=after, http_status=status)
    if status != 200:
        text = clean(resp.text().strip())
        if status in GATEWAY_REFUSALS:
            hint = NOT_FOUND_HINT if status == 404 and op == "trigger" else ""
            return Answer(Kind.PERMANENT, status, f"HTTP {status} {text}".strip() + hint, http_status=status)
        return Answer(Kind.UNKNOWN, status, f"HTTP {status} after sending {text}".strip(), http_status=status)
    try:
        body = transport.decode_json(resp.body)
    except ValueError:
        body = None
    env = protocol.read_envelope(_token_body(body) if op == "token" else body)
    if env is None:
        return Answer(Kind.UNKNOWN, None, "unparsable answer body", http_status=status)
    msg = clean(env.msg)
    if env.auth_failure:
        detail = protocol.TOKEN_ERRORS.get(env.code or 0, msg or "auth failure")
        return Answer(Kind.AUTH, env.code, detail, http_status=status)
    if env.code == protocol.OK:
        data = env.data
        if isinstance(data, dict) and "flowInstanceId" in data:
            # An id that is not one (or holds a credential) is dropped, never kept.
            data = {**data, "flowInstanceId": checked_id(data["flowInstanceId"], clean)}
        return Answer(Kind.OK, 0, msg, data, http_status=status)
    if env.code == protocol.SERVER_ERROR and op != "log":  # for a log: "no log found"
        kind = Kind.UNKNOWN if op == "trigger" else Kind.RETRYABLE
        return Answer(kind, env.code, msg or "server internal exception", http_status=status)
    if env.code == protocol.BAD_PARAMETER_OR_DUPLICATE and op == "trigger":
        return Answer(Kind.DUPLICATE, env.code, msg, http_status=status)
    # The table's permanent row, and a code the table does not name: the service answered,
    # so it refused (a failed key is looked up before it is ever sent again: docs/apply.md).
    return Answer(Kind.PERMANENT, env.code, msg, http_status=status)


def _token_body(body: object) -> object:
    """A token answer read leniently: a vendor sample misspells ``status`` as ``stauts``, and
    an answer with ``data.accessToken`` and no status at all is a success."""
    if not isinstance(body, dict) or "status" in body or "code" in body:
        return body
    if "stauts" in body:
        return {**body, "status": body["stauts"]}
    data = body.get("data")
    if isinstance(data, dict) and isinstance(data.get("accessToken"), str):
        return {**body, "status": protocol.OK}
    return body


def transport_failure(
    e: requests.exceptions.RequestException, *, cut: bool, deadline: float, where: str
) -> Answer:
    """What a transport failure means: nothing sent, unknown after sending, or TLS. ``cut``:
    the answer's overall ``deadline`` shut the connection while the answer was awaited."""
    if cut:
        return Answer(Kind.UNKNOWN, None, f"read timeout after sending (no whole answer within {deadline:g} s)")
    if isinstance(e, requests.exceptions.ConnectTimeout):
        return Answer(Kind.RETRYABLE, None, "connect timeout (nothing sent)")
    if isinstance(e, requests.exceptions.SSLError):
        return Answer(Kind.FATAL, None, f"TLS error talking to {where}: {type(e).__name__}")
    if isinstance(e, requests.exceptions.ProxyError):
        return Answer(Kind.RETRYABLE, None, "the proxy refused or could not connect (nothing sent)")
    if isinstance(e, requests.exceptions.ReadTimeout):
        return Answer(Kind.UNKNOWN, None, "read timeout after sending")
    if isinstance(e, requests.exceptions.ConnectionError):
        if transport.never_connected(e):
            return Answer(Kind.RETRYABLE, None, "connection refused (nothing sent)")
        return Answer(Kind.UNKNOWN, None, "connection dropped after sending")
    return Answer(Kind.UNKNOWN, None, f"transport error after sending ({type(e).__name__})")

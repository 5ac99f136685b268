"""The HTTP transport under the client: the loopback guard, the answer deadline, the proxy.

Plain ``http://`` connections may only reach a loopback peer (checked on the connected
socket, before a byte is sent); every answer has an overall deadline, enforced by one
watchdog thread that shuts the connection of a request whose answer is still trickling in
when it passes; ``--proxy``/``$PLANRUNNER_PROXY`` is the only proxy ever used. The client
(:mod:`planrunner.enos`) mounts :class:`GuardedAdapter` on each of its sessions.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection

from planrunner import credentials, protocol
from planrunner.errors import UsageError

ANSWER_DEADLINE = 120.0  # seconds for a whole answer, however it trickles in
ANSWER_DEADLINE_ENV = "PLANRUNNER_ANSWER_DEADLINE"
PROXY_ENV = "PLANRUNNER_PROXY"
FOREIGN_READ_LIMIT = credentials.FOREIGN_READ_LIMIT  # characters of a non-200 body read at all
MAX_ANSWER_BYTES = 32 * 1024 * 1024  # a larger answer is unparsable
MAX_JSON_DIGITS = 18  # an integer with more digits is not one the service sends (64-bit)


def seconds_setting(
    name: str, default: float, environ: Mapping[str, str] | None = None, *, zero: bool = False
) -> float:
    """``$name`` as seconds (> 0, or >= 0 with ``zero``), else ``default``; a bad value is a
    :class:`UsageError` naming the variable."""
    env = os.environ if environ is None else environ
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not ((value >= 0) if zero else (value > 0)) or not value < math.inf:
        raise UsageError(f"${name} must be a number of seconds {'>=' if zero else '>'} 0")
    return value


# --proxy for the command being run (a ContextVar, so it never outlives the command).
PROXY: contextvars.ContextVar[str | None] = contextvars.ContextVar("planrunner_proxy", default=None)


@contextlib.contextmanager
def proxy_given(url: str | None) -> Iterator[None]:
    """Clients made inside use ``url`` as their proxy (``--proxy``); None changes nothing."""
    if url is None:
        yield
        return
    token = PROXY.set(url)
    try:
        yield
    finally:
        PROXY.reset(token)


def proxy_setting(environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy to use: ``--proxy``, else ``$PLANRUNNER_PROXY``, else none. The usual
    ``HTTPS_PROXY``/``ALL_PROXY`` are never read. Raises :class:`UsageError` for a bad URL."""
    env = os.environ if environ is None else environ
    url = PROXY.get() or env.get(PROXY_ENV) or None
    if url is not None:
        why = protocol.proxy_problem(url)
        if why:
            raise UsageError(f"--proxy or ${PROXY_ENV}: {why}")
    return url


def answer_deadline_setting(environ: Mapping[str, str] | None = None) -> float:
    """``$PLANRUNNER_ANSWER_DEADLINE`` (seconds, > 0), else :data:`ANSWER_DEADLINE`."""
    return seconds_setting(ANSWER_DEADLINE_ENV, ANSWER_DEADLINE, environ)


class Watch:
    """One request's overall deadline: when it passes, the connection is shut down, so a
    read blocked on a gateway that drip-feeds its answer returns at once."""

    __slots__ = ("_lock", "_sock", "cut", "done", "expired")

    def __init__(self) -> None:
        self.done = False  # the request is over: nothing to cut
        self.expired = False  # the deadline passed
        self.cut = False  # ... and the connection, its request sent, was shut down
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def attach(self, sock: socket.socket | None) -> None:
        """The request was sent on ``sock``; its answer is read from it next."""
        with self._lock:
            self._sock = sock
            cut = self.cut = self.expired and sock is not None
        if cut:
            _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._sock
            self.cut = sock is not None
        _shut(sock)


def _shut(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, TLS or not


class Watchdog:
    """One thread that expires the watches whose deadline passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._cond = threading.Condition()
        self._seq = 0
        self._thread: threading.Thread | None = None

    def add(self, deadline: float, watch: Watch) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (deadline, self._seq, watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="answer-deadline", daemon=True
                )
                self._thread.start()
            if self._heap[0][2] is watch:
                self._cond.notify()  # the new deadline is the next one: wake the thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _, watch = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            if not watch.done:
                watch.expire()


WATCHDOG = Watchdog()
CURRENT = threading.local()  # the watch of the request this thread is sending


class NotLoopbackError(Exception):
    """A plain http:// connection reached a peer that is not a loopback address."""

    def __init__(self, peer: str) -> None:
        super().__init__(f"peer {peer} is not a loopback address")
        self.peer = peer


def _peer_address(sock: Any) -> str:
    """The address a connected socket's peer has (a test may replace this)."""
    return str(sock.getpeername()[0])


def _awaiting_answer(sock: socket.socket | None) -> None:
    """The request of this thread was sent on ``sock``: its deadline may now cut it."""
    watch: Watch | None = getattr(CURRENT, "watch", None)
    if watch is not None:
        watch.attach(sock)


class WatchedConnection(urllib3.connection.HTTPConnection):
    """An http:// connection whose answer is bounded by the request's overall deadline."""

    def getresponse(self) -> Any:
        _awaiting_answer(self.sock)
        return super().getresponse()


class WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    """An https:// connection whose answer is bounded by the request's overall deadline."""

    def getresponse(self) -> Any:
        _awaiting_answer(self.sock)
        return super().getresponse()


class _LoopbackOnlyConnection(WatchedConnection):
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


class WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """Mounted for both schemes: ``http://`` connections check the peer address, and every
    answer is bounded by its request's overall deadline (through a proxy too)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        classes = dict(self.poolmanager.pool_classes_by_scheme)
        classes["http"] = _LoopbackOnlyPool
        classes["https"] = WatchedHTTPSPool
        self.poolmanager.pool_classes_by_scheme = classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        classes = dict(manager.pool_classes_by_scheme)
        classes["https"] = WatchedHTTPSPool  # a proxy is used for https:// gateways only
        manager.pool_classes_by_scheme = classes
        return manager


# -- reading an answer -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer read whole."""

    status: int
    retry_after: str | None
    body: bytes

    def text(self) -> str:
        return self.body[: FOREIGN_READ_LIMIT * 4].decode("utf-8", "replace")


def _reject(text: str) -> Any:
    raise ValueError(f"not a JSON value the service sends: {text[:20]}")


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise ValueError("an integer past 64 bits")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number out of range")
    return value


def decode_json(body: bytes) -> Any:
    """A service answer's JSON, strictly: ValueError for anything that is not UTF-8 JSON, and
    for NaN, Infinity, numbers out of range, integers past 64 bits and absurd nesting."""
    try:
        return json.loads(
            body.decode("utf-8"),
            parse_constant=_reject,
            parse_int=_json_int,
            parse_float=_json_float,
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None


def read_body(resp: requests.Response) -> Reply | None:
    """The whole answer; None past :data:`MAX_ANSWER_BYTES` (a larger one is unparsable)."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in resp.iter_content(65_536):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                return None
            chunks.append(chunk)
    finally:
        resp.close()
    return Reply(resp.status_code, resp.headers.get("Retry-After"), b"".join(chunks))


def never_connected(e: requests.exceptions.ConnectionError) -> bool:
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


def retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None

"""The simulator's HTTP/1.1 server: routes requests and encodes replies, nothing else.

A ThreadingHTTPServer on loopback with keep-alive and Nagle off (without it, keep-alive
clients crawl at about 23 requests per second), quiet, and tolerant of clients that hang up.
Routing is by method, path and the ``action`` query parameter; the paths are the dialect's
API version's (the other version's answer 404).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from planrunner import protocol
from planrunner.sim.reply import JSON_TYPE, Reply
from planrunner.sim.state import Incoming, Route, State

MAX_BODY = 1_000_000  # bytes; larger bodies get the gateway's 413
HTTP_NOT_FOUND = 404
HTTP_TOO_LARGE = 413
REQUEST_QUEUE_SIZE = 128
TEXT_TYPE = "text/plain;charset=UTF-8"
SIM_FLOWS_PATH = "/__sim__/flows"  # per flow: the peak of unfinished instances, and how many


def task_instances(api: protocol.Api) -> str:
    """Get Task Instance Log's path."""
    return api.prefix + "/taskInstances"


def route(api: protocol.Api, method: str, path: str, action: str) -> Route | None:
    """The route of a request, or None for a path the gateway does not know (404)."""
    if method == "POST" and path == protocol.TOKEN_GET_PATH:
        return Route.TOKEN_GET
    if method == "POST" and path == protocol.TOKEN_REFRESH_PATH:
        return Route.TOKEN_REFRESH
    table = {
        ("POST", api.flows, "trigger"): Route.TRIGGER,
        ("POST", api.flows, "updateAndTrigger"): Route.UPDATE_AND_TRIGGER,
        ("GET", task_instances(api), "getLog"): Route.TASK_LOG,
        ("GET", api.flows, "get"): Route.GET_FLOW,
        ("GET", api.instances, "get"): Route.GET_INSTANCE,
        ("POST", api.instances, "search"): Route.SEARCH,
        ("POST", api.instances, "cancel"): Route.CANCEL,
        ("GET", api.time, "getTimeZone"): Route.TIME_ZONE,
        ("GET", api.time, "getCurrentTime"): Route.CURRENT_TIME,
    }
    found = table.get((method, path, action))
    if found is not None:
        return found
    if path in (api.flows, api.instances, api.time, task_instances(api)):
        return Route.UNKNOWN_ACTION
    return None


class Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: SimServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the simulator's record is the trigger log."""

    def do_GET(self) -> None:
        """Every GET."""
        self._handle("GET")

    def do_POST(self) -> None:
        """Every POST."""
        self._handle("POST")

    def _handle(self, method: str) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._send(Reply(HTTP_TOO_LARGE, b"request entity too large"))
            return
        body = self.rfile.read(length) if length else b""
        if method == "GET" and parts.path == protocol.SIM_TRIGGERS_PATH:
            self._send(Reply(200, {"triggers": state.trigger_log()}))
            return
        if method == "GET" and parts.path == SIM_FLOWS_PATH:
            self._send(Reply(200, {"flows": state.service.flow_stats()}))
            return
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        found = route(state.dialect.version, method, parts.path, params.get("action", ""))
        if found is None:
            self._send(state.admit() or Reply(HTTP_NOT_FOUND, b"not found"))  # no API: no quota
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._send(state.handle(found, Incoming(parts.path, params, headers, body)))

    def _peer_gone(self) -> bool:
        """Whether the client closed its end (a read timeout that gave up on us)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _send(self, reply: Reply) -> None:
        if reply.log is not None and not reply.drop and self._peer_gone():
            reply.log["answered"] = False  # the instance exists; nobody hears of it
            self.close_connection = True
            return
        if reply.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(reply.body, dict):
            try:
                data = orjson.dumps(reply.body)  # fast: a page of instances per Search
            except (TypeError, OverflowError):  # what orjson will not write (huge ints)
                data = json.dumps(reply.body).encode()
            ctype = JSON_TYPE
        else:
            data, ctype = reply.body, TEXT_TYPE
        self.send_response(reply.status)
        names = {k.lower() for k, _ in reply.headers}
        for k, v in reply.headers:
            self.send_header(k, v)
        if "content-type" not in names:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class SimServer(ThreadingHTTPServer):
    """The HTTP server, carrying the simulator's state."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = REQUEST_QUEUE_SIZE

    def __init__(self, address: tuple[str, int], state: State) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.state = state

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup HTTPServer does (slow on some hosts)."""
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer (a killed apply) is normal here, not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

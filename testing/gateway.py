"""A hostile, odd or slow service for the tests of the client, the commands and the plan
language (findings N4-N7, N11, N16, D5, newcomer findings 26 and 36).

The hostile gateway is a small loopback ``ThreadingHTTPServer`` (the probe's appendix lists
its answers): the token call gets ``TOKEN``, Get Time Zone ``GMT+8``, Get 62102, Search the
instances it created; each test changes one answer. The proxy is a small loopback CONNECT
proxy that records what it was asked to reach.
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from planrunner import enos, protocol
from testing import write_plan
from testing.hostile import KEY, SECRET, TOKEN

INJECTION = "\x1b[2J\x1b[31m::error file=x::INJECTED\n::add-mask::x\r\n"
GMT8 = protocol.server_zone("GMT+8")
TWO = '  - {name: f1, flowId: 1, at: ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"]}\n'
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass
class Reply:
    """One answer: ``drip`` > 0 writes it a byte at a time, that many seconds apart
    (``whole``: the status line and headers too, not only the body)."""

    status: int
    body: bytes
    drip: float = 0.0
    whole: bool = False


def env(code: int, msg: str = "", data: Any = None) -> Reply:
    return Reply(200, json.dumps({"status": code, "msg": msg, "data": data}).encode())


Handler = Callable[[str, dict[str, str], Any], Reply | None]


class _Serving:
    """A loopback server run on a thread while in a ``with`` block."""

    server: socketserver.TCPServer

    def _start(self, server: socketserver.TCPServer) -> None:
        self.server = server
        self.server.daemon_threads = True  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Gateway(_Serving):
    """A loopback gateway; ``on(path, params, body) -> Reply | None`` overrides any answer
    (None: the default one). Triggers create instances unless ``create`` is False."""

    def __init__(self, on: Handler | None = None, *, create: bool = True) -> None:
        self.on = on or (lambda path, params, body: None)
        self.create = create
        self.created: list[tuple[int, int]] = []
        self.triggers = 0
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def _go(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                body = json.loads(raw) if raw else None
                reply = outer.answer(parts.path, params, body)
                head = f"HTTP/1.1 {reply.status} X\r\nContent-Length: {len(reply.body)}\r\n\r\n"
                data = head.encode() + reply.body
                if not reply.drip:
                    self.wfile.write(data)
                    return
                start = 0 if reply.whole else len(head)
                self.wfile.write(data[:start])
                self.wfile.flush()
                try:
                    for i in range(start, len(data)):
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        time.sleep(reply.drip)
                except OSError:
                    pass  # the client gave up: that is the point

            do_GET = do_POST = _go

        self._start(ThreadingHTTPServer(("127.0.0.1", 0), H))

    def answer(self, path: str, params: dict[str, str], body: Any) -> Reply:
        special = self.on(path, params, body)
        if "/token/" in path:
            return special or env(0, "SUCCESS", {"accessToken": TOKEN, "expire": 7200})
        action = params.get("action")
        if action == "trigger":
            with self.lock:
                self.triggers += 1
                if self.create:
                    self.created.append((body["flowId"], body["triggerTime"]))
            fid, tt = body["flowId"], body["triggerTime"]
            return special or env(0, "OK", {"flowInstanceId": protocol.instance_id(fid, tt)})
        if special is not None:
            return special
        if action == "get" and "flowId" in params:  # Get Flow, asked before a flow's first trigger
            graph = json.dumps({"tasks": [{"taskId": "t1", "taskName": "t1"}]})
            return env(0, "OK", {"flowId": int(params["flowId"]), "graph": graph})
        if action == "getTimeZone":
            return env(0, "OK", {"timezone": "GMT+8"})
        if action == "getCurrentTime":
            return env(0, "OK", int(time.time() * 1000))
        if action == "search":
            lo, hi = body["fromTriggerTime"], body["toTriggerTime"]
            with self.lock:
                hits = [(f, t) for f, t in self.created if lo <= t < hi]
            insts = [
                {
                    "instanceId": protocol.instance_id(f, t),
                    "flowId": f,
                    "triggerTime": protocol.format_time(t, GMT8),
                    "status": protocol.SUCCESS,
                }
                for f, t in hits
            ]
            return env(0, "OK", {"flowInsts": insts})
        return env(62102, "Instance not found")


def client(url: str, **kw: Any) -> enos.Client:
    kw.setdefault("lookup_tries", 1)
    return enos.Client(url, "o1", "u1", enos.Credentials(KEY, SECRET), **kw)


def apply(run: Any, tmp_path: Path, url: str, plan_text: str = TWO, *extra: str) -> tuple[Any, Path]:
    plan = write_plan(tmp_path, plan_text)
    led = tmp_path / "l.jsonl"
    r = run("apply", str(plan), "--gateway", url, "--yes", "--ledger", str(led), *extra)
    return r, led


def pieces(value: str, n: int = 12) -> list[str]:
    return [value[i : i + n] for i in range(len(value) - n + 1)]


def assert_harmless(*texts: str) -> None:
    """No credential (nor any 12-character piece of one), ANSI escape, line-initial ``::``,
    traceback or 100 KB value."""
    for text in texts:
        for value in (SECRET, TOKEN, KEY):
            assert not any(p in text for p in pieces(value)), text[:2000]
        assert "\x1b" not in text and "\r" not in text
        assert not any(line.lstrip().startswith("::") for line in text.splitlines())
        assert "Traceback" not in text and "Exception in thread" not in text
        assert len(text) < 20_000


# -- N11: answers that cannot be read ----------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000

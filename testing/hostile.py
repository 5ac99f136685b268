"""The reliability probe's hostile gateway and credentials, shared by the tests of every
module it pins: a tiny HTTP server on loopback that issues a token and then answers API calls
however a test tells it to.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SECRET = "SEKRET-abc123XYZ-secretvalue"
KEY = "AKEY-zzz987-accesskey"
TOKEN = "TOKEN-SENTINEL-7f3a9c"
ONE = '  - {name: f1, flowId: 1, at: ["2026-01-01T00:00:00Z"]}\n'
T0 = 1767225600000  # 2026-01-01T00:00:00Z
Reply = Callable[[str, bytes], tuple[int, bytes]]


def envelope(status: int, msg: str, data: Any = None) -> tuple[int, bytes]:
    return 200, json.dumps({"status": status, "msg": msg, "data": data}).encode()


class HostileGateway:
    """A loopback HTTP server: the token call gets ``token`` (or ``token_reply``), every other
    call ``reply(path, body)``. ``requests`` lists (path, headers, body) of everything it got."""

    def __init__(self, reply: Reply, token: Any = TOKEN, token_reply: Reply | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def _go(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.path, dict(self.headers), body))
                if "/token/" in self.path:
                    if token_reply is not None:
                        code, out = token_reply(self.path, body)
                    else:
                        code, out = envelope(0, "SUCCESS", {"accessToken": token, "expire": 7200})
                elif "/flows?" in self.path and "action=get&" in self.path:
                    # Get Flow, asked before a flow's first trigger: a flow with a task, so
                    # that the hostile answers reach the trigger they are meant for.
                    graph = json.dumps({"tasks": [{"taskId": "t1", "taskName": "t1"}]})
                    code, out = envelope(0, "Success", {"flowId": 1, "graph": graph})
                else:
                    code, out = reply(self.path, body)
                self.send_response(code)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _go

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostileGateway:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def api_calls(self) -> list[str]:
        return [p for p, _, _ in self.requests if "/token/" not in p]


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text and "Exception in thread" not in text, text[-2000:]

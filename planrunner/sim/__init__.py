"""The local service simulator: in-process for tests and ``apply --sim``, or ``planrunner sim``.

It speaks the EnOS API gateway and Data Flow batch service as the vendor documents them
(docs/protocol.md, docs/simulator.md), with a :class:`Dialect` switch for every
undocumented point and :class:`Faults` to inject failures. Modules, one concern each:

- :mod:`~planrunner.sim.service`: the service's rules (flows, instances, queues, lookups);
- :mod:`~planrunner.sim.flows`: :class:`SimFlow`, the vendor's Flow struct and its tasks;
- :mod:`~planrunner.sim.instances`: instances, queues, task statuses and task logs;
- :mod:`~planrunner.sim.quota`: the gateway's quotas per second, minute, hour or day;
- :mod:`~planrunner.sim.gateway`: tokens and signatures;
- :mod:`~planrunner.sim.faults`: :class:`Faults` and :class:`Dialect`;
- :mod:`~planrunner.sim.state`: the order a request goes through, and the trigger log;
- :mod:`~planrunner.sim.http`: the HTTP/1.1 server (routing and encoding only);
- :mod:`~planrunner.sim.fixture`: the flows fixture;
- ``planrunner sim`` is :mod:`planrunner.commands.sim`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from http.client import OK, HTTPConnection  # by name: `http` here is planrunner.sim.http
from typing import Any

from planrunner import protocol
from planrunner.sim.faults import Dialect, Faults
from planrunner.sim.fixture import load_flows
from planrunner.sim.gateway import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, DEFAULT_TOKEN_TTL
from planrunner.sim.http import SIM_FLOWS_PATH, SimServer
from planrunner.sim.quota import Quota
from planrunner.sim.service import SimFlow
from planrunner.sim.state import State

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_SECRET_KEY",
    "Dialect",
    "Faults",
    "Quota",
    "SimFlow",
    "Simulator",
    "load_flows",
]

TRIGGERS_TIMEOUT = 10.0  # seconds, for Simulator.triggers()
POLL_SECONDS = 0.05  # how often the serving loop checks for stop(): stop() waits up to this


class Simulator:
    """A simulator serving on loopback; ``start()``/``stop()`` or use as a context manager.

    ``state.triggers`` is the in-process trigger log; :meth:`triggers` reads the same over
    HTTP. A host that is not a loopback address is refused with ValueError.

    A flow not in ``flows`` is refused as the vendor does (62102 on trigger, Get Flow not
    found) unless ``accept_unknown_flows``. ``quotas``: the gateway's quotas (every signed
    call counts). ``crowd``: ``(flowId, minute epoch ms, count)`` items, each pre-creating
    ``count`` instances of other flows in that minute.
    """

    def __init__(
        self,
        flows: Iterable[SimFlow] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        faults: Faults | None = None,
        rate_limit: float | None = None,
        token_ttl: int = DEFAULT_TOKEN_TTL,
        dialect: Dialect | None = None,
        accept_unknown_flows: bool = False,
        quotas: Iterable[Quota] = (),
        crowd: Sequence[tuple[int, int, int]] = (),
    ) -> None:
        if not protocol.is_loopback(host):
            raise ValueError(f'the simulator binds to loopback addresses only, not "{host}"')
        self.dialect = dialect or Dialect()
        faults = faults or Faults()
        self.state = State(
            flows,
            access_key,
            secret_key,
            faults,
            rate_limit,
            token_ttl,
            self.dialect,
            quotas=quotas,
            accept_unknown_flows=accept_unknown_flows,
        )
        for flow_id, minute, count in crowd:
            self.state.service.crowd(flow_id, minute, count)
        self._server = SimServer((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT`` (``http://[::1]:PORT`` on IPv6)."""
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> Simulator:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(POLL_SECONDS,),
            name="planrunner-sim",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve(self) -> None:
        """Serve in this thread until interrupted (``planrunner sim``)."""
        self._server.serve_forever(POLL_SECONDS)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self.close()

    def close(self) -> None:
        """Close the listening socket."""
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def triggers(self) -> list[dict[str, Any]]:
        """Every trigger received, in arrival order (read over HTTP, as a test would)."""
        result: list[dict[str, Any]] = self._read(protocol.SIM_TRIGGERS_PATH)["triggers"]
        return result

    def flows(self) -> dict[int, dict[str, Any]]:
        """``/__sim__/flows`` by flowId: ``maxUnfinished`` and ``instances`` (over HTTP)."""
        items: list[dict[str, Any]] = self._read(SIM_FLOWS_PATH)["flows"]
        return {item["flowId"]: item for item in items}

    def _read(self, path: str) -> dict[str, Any]:
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        conn = HTTPConnection(host, port, timeout=TRIGGERS_TIMEOUT)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != OK:
                raise RuntimeError(f"{path}: HTTP {resp.status}")
        finally:
            conn.close()
        result: dict[str, Any] = json.loads(body)
        return result

"""The local service simulator: in-process for tests and ``--sim``, or ``planrunner sim``."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import requests

from planrunner.errors import UsageError
from planrunner.sim.server import DEFAULT_RUN_SECONDS, Faults, SimFlow, SimServer, State

DEFAULT_ACCESS_KEY = "sim-access-key"
DEFAULT_SECRET_KEY = "sim-secret-key"  # noqa: S105 - the simulator's documented default

__all__ = ["Faults", "SimFlow", "Simulator", "load_flows", "serve_command"]


class Simulator:
    """A simulator serving on loopback in a background thread; use as a context manager."""

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
        token_ttl: int = 7200,
    ) -> None:
        self.state = State(
            {f.flow_id: f for f in flows},
            access_key,
            secret_key,
            faults or Faults(),
            rate_limit,
            token_ttl,
        )
        self._server = SimServer((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Simulator:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="planrunner-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def triggers(self) -> list[dict[str, Any]]:
        """Every trigger received, in arrival order (read over HTTP, as a test would)."""
        resp = requests.get(self.url + "/__sim__/triggers", timeout=10)
        resp.raise_for_status()
        result: list[dict[str, Any]] = resp.json()["triggers"]
        return result


def _flow_from(item: Mapping[str, Any], where: str) -> SimFlow:
    known = {"flowId", "owner", "orgId", "locked", "hasTask", "runSeconds"}
    unknown = set(item) - known
    if unknown:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})"
        )
    flow_id = item.get("flowId")
    if not isinstance(flow_id, int) or isinstance(flow_id, bool) or flow_id < 1:
        raise UsageError(f"{where}: flowId must be an integer >= 1")
    run_seconds = item.get("runSeconds", DEFAULT_RUN_SECONDS)
    if not isinstance(run_seconds, int | float) or run_seconds < 0:
        raise UsageError(f"{where}: runSeconds must be a number >= 0")
    owner, org = item.get("owner"), item.get("orgId")
    return SimFlow(
        flow_id=flow_id,
        owner=None if owner is None else str(owner),
        org_id=None if org is None else str(org),
        locked=bool(item.get("locked", False)),
        has_task=bool(item.get("hasTask", True)),
        run_seconds=float(run_seconds),
    )


def load_flows(path: str) -> list[SimFlow]:
    """Read a flows fixture: a YAML list of {flowId, owner, orgId, locked, hasTask, runSeconds}."""
    from planrunner import source

    try:
        with open(path, "rb") as f:
            doc = source.load(f.read())
    except OSError as e:
        raise UsageError(f"{path}: cannot read flows file: {e.strerror or e}") from None
    except source.SourceError as e:
        raise UsageError(f"{path}:{e.mark.line}:{e.mark.col}: {e.message}") from None
    if doc.problems:
        p = doc.problems[0]
        raise UsageError(f"{path}: {p.message}")
    if not isinstance(doc.data, list):
        raise UsageError(f"{path}: expected a list of flows")
    flows = []
    for i, item in enumerate(doc.data):
        mark = doc.locate((i,))
        if not isinstance(item, dict):
            raise UsageError(f"{path}:{mark.line}:{mark.col}: expected a mapping")
        flows.append(_flow_from(item, f"{path}:{mark.line}:{mark.col}"))
    return flows


def serve_command(args: argparse.Namespace) -> int:
    """``planrunner sim``: print the base URL first, then serve until interrupted."""
    flows = load_flows(args.flows) if args.flows else []
    try:
        faults = Faults.parse(args.fault, latency=args.latency, seed=args.seed)
    except ValueError as e:
        raise UsageError(f"--fault: {e}") from None
    access = args.access_key or os.environ.get("ENOS_ACCESS_KEY") or DEFAULT_ACCESS_KEY
    secret = args.secret_key or os.environ.get("ENOS_SECRET_KEY") or DEFAULT_SECRET_KEY
    try:
        sim = Simulator(
            flows,
            host=args.host,
            port=args.port,
            access_key=access,
            secret_key=secret,
            faults=faults,
            rate_limit=args.rate_limit,
            token_ttl=args.token_ttl,
        )
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    print(sim.url, flush=True)
    print(
        f"simulating {len(flows)} listed flows (others accepted for any user); Ctrl-C stops",
        file=sys.stderr,
    )
    try:
        sim._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim._server.server_close()
    return 0

"""The engines behind ``apply``, ``status`` and ``cancel`` (contract sections 5 and 10).

``runs.apply`` sends a plan's entries exactly once; ``runs.watch`` looks up what apply
triggered; ``runs.cancel`` cancels what has not ended. Commands call them and render what
they return; nothing here prints. This module holds what the three share: run and attempt
ids, the one client factory (:func:`connect`, the embedded simulator included) and the one
worker pool (:class:`WorkerPool`, with its stop event and its rule for bugs: exit 70).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from planrunner import enos, ledger, protocol
from planrunner.errors import EXIT_INTERNAL, PlanrunnerError

if TYPE_CHECKING:  # the type only: the engines do not load the plan loader (yaml, jsonschema)
    from planrunner.plan import Plan

SIM_RUN_SECONDS = 0.05  # how long the embedded simulator's instances run
JOIN_SECONDS = 0.2  # how often the main thread wakes while workers run (to take Ctrl-C)

T = TypeVar("T")


# -- ids -------------------------------------------------------------------------------------


def new_run_id() -> str:
    """A short id unique to this run."""
    return "r" + time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class AttemptIds:
    """``{run_id}.1``, ``{run_id}.2``, ...: the attempt ids of one run (thread-safe)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._n = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        """The next attempt id."""
        with self._lock:
            self._n += 1
            return f"{self.run_id}.{self._n}"


# -- the client -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connection:
    """A client for the plan's target, and how to name the gateway."""

    client: enos.Client
    where: str  # how output and logs name the gateway
    gateway_id: str  # what ledger records carry in ``gateway``


def connect(
    plan: Plan,
    gateway: str | None,
    sim: bool = False,
    *,
    stack: contextlib.ExitStack | None = None,
    read_timeout: float | None = None,
) -> Connection:
    """The one client factory: ``--gateway`` or ``target.gateway`` with credentials from the
    environment, or (``sim``) a simulator seeded with the plan's flows, kept running until
    ``stack`` closes. ``${VAR}`` in target.gateway is never shown expanded."""
    target = plan.target
    version = protocol.api(target.api)
    if sim:
        if stack is None:
            raise ValueError("connect(sim=True) needs an ExitStack to keep the simulator in")
        from planrunner.sim import (
            DEFAULT_ACCESS_KEY,
            DEFAULT_SECRET_KEY,
            Dialect,
            SimFlow,
            Simulator,
        )

        seeds = [
            SimFlow(
                f.flow_id,
                users=(target.user_id,),
                org_id=target.org_id,
                run_seconds=SIM_RUN_SECONDS,
            )
            for f in {f.flow_id: f for f in plan.flows}.values()
        ]
        simulator = stack.enter_context(Simulator(seeds, dialect=Dialect(api=version.name)))
        url, creds = simulator.url, enos.Credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)
        where, gateway_id = "the embedded simulator", ledger.SIM_GATEWAY
    else:
        url = enos.check_gateway(gateway or target.gateway)
        creds = enos.Credentials.from_env()
        where, gateway_id = shown_gateway(plan, gateway, url), protocol.origin(url)
    zone = protocol.server_zone(target.server_timezone) if target.server_timezone else None
    client = enos.Client(
        url,
        target.org_id,
        target.user_id,
        creds,
        read_timeout=enos.READ_TIMEOUT if read_timeout is None else read_timeout,
        api=version,
        server_zone=zone,
        shown=where,
    )
    return Connection(client, where, gateway_id)


def shown_gateway(plan: Plan, override: str | None, url: str) -> str:
    """How output and logs name the gateway: ``--gateway`` as given, else the plan's
    target.gateway as written when it holds ``${VAR}`` (never the expanded value)."""
    written = None if override else plan.raw_target.get("gateway")
    return protocol.shown_gateway(written if isinstance(written, str) else None, url)


# -- the worker pool ------------------------------------------------------------------------


class InternalError(PlanrunnerError):
    """A bug met on a worker thread: the pool stopped cleanly; the command exits 70."""

    exit_code = EXIT_INTERNAL


class WorkerPool(Generic[T]):
    """Up to ``concurrency`` threads taking items (a flow's work, an entry) from one queue.

    ``step(item)`` does a piece of an item's work and says whether more is left: the item
    goes back to the queue's end, so every worker stays busy while items outnumber them.
    ``finish(item)`` runs once per item, when it has no more work or the pool stopped.
    No exception ends a worker with a traceback: the first :class:`PlanrunnerError`, or an
    :class:`InternalError` for anything else (a bug, logged with its traceback at debug),
    is kept in :attr:`failure` and sets :attr:`stop`; the caller reports it.
    """

    def __init__(
        self,
        concurrency: int,
        *,
        name: str,
        stop: threading.Event | None = None,
        clean: Callable[[str], str] = str,
        after_bug: str = "stopped: everything done so far is recorded",
        on_failure: Callable[[PlanrunnerError], None] | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.name = name
        self.stop = stop or threading.Event()
        self.failure: PlanrunnerError | None = None
        self.interrupted = False  # a KeyboardInterrupt reached the main thread while waiting
        self._clean = clean  # makes a bug's text safe to show (the client's redaction)
        self._after_bug = after_bug  # what a bug left behind, for its message
        self._on_failure = on_failure
        self._lock = threading.Lock()

    def fail(self, error: PlanrunnerError) -> None:
        """Stop the pool for ``error`` (the first one is kept)."""
        with self._lock:
            self.failure = self.failure or error
        if self._on_failure is not None:
            self._on_failure(error)
        self.stop.set()

    def bug(self, e: BaseException) -> None:
        """A bug in a worker: logged with its traceback (at debug), the pool stopped, exit 70."""
        from planrunner import log

        trace = "".join(traceback.format_exception(e))
        log.get(self.name).debug(
            f"internal error in a {self.name} worker", traceback=self._clean(trace)
        )
        self.fail(
            InternalError(
                f"internal error (a bug) in a {self.name} worker: {type(e).__name__}: "
                f"{self._clean(str(e))}; {self._after_bug}"
            )
        )

    def guarded(self, work: Callable[[T], bool], item: T) -> bool:
        """``work(item)``; a failure stops the pool instead of escaping (see the class)."""
        try:
            return work(item)
        except PlanrunnerError as e:
            self.fail(e)
        except Exception as e:  # a bug must not leave other workers running
            self.bug(e)
        return False

    def run(
        self,
        items: Iterable[T],
        step: Callable[[T], bool],
        finish: Callable[[T], None] | None = None,
        on_interrupt: Callable[[], None] | None = None,
    ) -> list[T]:
        """Work through ``items``; returns those left in the queue when the pool stopped
        (already finished)."""
        queue: deque[T] = deque(items)
        queue_lock = threading.Lock()

        def done(item: T) -> bool:
            if finish is not None:
                finish(item)
            return False

        def worker() -> None:
            while True:
                with queue_lock:
                    if not queue or self.stop.is_set():
                        return
                    item = queue.popleft()
                if self.guarded(step, item) and not self.stop.is_set():
                    with queue_lock:
                        queue.append(item)
                else:
                    self.guarded(done, item)

        threads = [
            threading.Thread(target=worker, name=f"{self.name}-{i}", daemon=True)
            for i in range(min(self.concurrency, len(queue)))
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(JOIN_SECONDS)  # short joins let the main thread take Ctrl-C
        except KeyboardInterrupt:
            self.interrupted = True
            self.stop.set()
            if on_interrupt is not None:
                on_interrupt()  # e.g. say that what is in flight is being finished
            for t in threads:
                t.join()
        left = list(queue)
        for item in left:
            self.guarded(done, item)
        return left

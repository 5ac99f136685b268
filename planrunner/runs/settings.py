"""How hard and how fast apply sends: :class:`Options` and its defaults (contract section 5).
``planrunner.runs.apply`` re-exports them (``engine.Options``)."""

from __future__ import annotations

from dataclasses import dataclass

from planrunner import enos

READ_TIMEOUT = enos.READ_TIMEOUT
IN_FLIGHT_MARGIN = 15.0  # seconds past the read timeout after which a request is surely over
DUPLICATE_WAIT = 61.0  # seconds after a flow's previous trigger before a 62102 is re-sent
GATEWAY_DOWN_AFTER = 5  # consecutive timeouts or unreachable answers that stop the run
UNVERIFIABLE_AFTER = 3  # consecutive outcomes of this run's sends that no lookup could verify
MAX_UNRESOLVED = 5  # unknown outcomes awaiting their lookup at once; at this many nothing new is sent
WAIT_TICK = 0.2  # seconds a worker waits before looking for other work when a flow must wait
SEND_SLACK = 5.0  # seconds: the most a request may leave after its intent's ``at``
SLOW_WRITES = 3  # intents in a row written slower than SEND_SLACK that stop the run


@dataclass(frozen=True, slots=True)
class Options:
    """How hard and how fast to send."""

    concurrency: int = 4
    rate: float | None = None
    retry_unknown: bool = False
    max_retries: int = 6
    backoff_base: float = 0.2
    backoff_cap: float = 20.0
    max_resends: int = 2  # unknown -> looked up, not found -> sent again, per key per run
    in_flight: float = READ_TIMEOUT + IN_FLIGHT_MARGIN  # an unknown younger than this may be in flight
    duplicate_wait: float = DUPLICATE_WAIT
    gateway_down_after: int = GATEWAY_DOWN_AFTER
    unverifiable_after: int = UNVERIFIABLE_AFTER
    max_unresolved: int = MAX_UNRESOLVED
    send_slack: float = SEND_SLACK
    read_timeout: float = READ_TIMEOUT  # the client's; in_flight must cover it
    # Pacing (command-line values; None / False: the plan's keys decide, see pace.rules_for).
    max_unfinished: int | None = None
    wait: bool = False  # wait for instances to finish instead of holding entries back
    interval: float | None = None  # the longest wait between polls (None: 30 s)
    halt_on_failure: bool = False
    rerun_failed: int | None = None  # more instances per entry whose instance failed (DESIGN 13)



"""Pacing by instances, halting on failure, and the per-flow rules that turn them on.

The service runs one instance of a flow at a time and queues the rest, so a backfill sent
as fast as the gateway allows queues all of itself ahead of the flow's own runs.
``maxUnfinished`` keeps at most N instances that this ledger triggered for a flow
unfinished; ``haltOnFailure`` sends no more of a flow once one of them ended FAIL, TIMEOUT
or INTERNAL_ERROR. Both are answered by one batched lookup (:func:`lookup.look_up_many`)
of the flow's done keys that are not yet known to be final: an instance that reached a
final status is never asked about again in the run, so a poll costs requests for the
unfinished few, not for the whole backfill.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from planrunner import enos, lookup, protocol
from planrunner.runs.decide import preflight

if TYPE_CHECKING:  # the types only: the engine does not load the plan loader
    from planrunner.plan import Flow
    from planrunner.runs.flow import FlowWork

FIRST_POLL = 1.0  # seconds: the first wait of --wait for instances to finish
LAST_POLL = 30.0  # seconds: the longest wait between polls (--interval lowers it)
HALT_STATES = frozenset(
    protocol.STATUS_NAMES[s] for s in (protocol.FAIL, protocol.TIMEOUT, protocol.INTERNAL_ERROR)
)
HALT_EVERY = 5.0  # seconds between looks for failed instances when the flow is not paced
HALT_OLDEST = 50  # instances asked about in such a look: the oldest open ones
HELD_BACK = "held back"  # the reason's first words: exit 4 counts these entries
HALTED = "halted"


# How many keys are looked up at once: lookup.look_up_many's signature. The engine takes it as
# a parameter so that its decisions can be tested with a scripted client.
LookUpMany = Callable[
    [enos.Client, Sequence[lookup.Wanted], "threading.Event | None"],
    dict[tuple[int, int], lookup.Seen],
]
look_up_many: LookUpMany = lookup.look_up_many


@dataclass(frozen=True, slots=True)
class Rules:
    """How one flowId is paced: the plan's keys, the command line's options over them."""

    max_unfinished: int | None = None
    halt_on_failure: bool = False

    @property
    def active(self) -> bool:
        """Whether anything must be looked up before the flow's sends."""
        return self.max_unfinished is not None or self.halt_on_failure


NO_RULES = Rules()


def rules_for(
    flows: Iterable[Flow], max_unfinished: int | None, halt_on_failure: bool
) -> dict[int, Rules]:
    """Per flowId: the option when given, else the plan's value (the flow's over the top
    level, already merged by the plan). Two plan flows of one flowId share its instances:
    the smaller limit wins, and either one's ``haltOnFailure``."""
    out: dict[int, Rules] = {}
    for f in flows:
        limit = max_unfinished if max_unfinished is not None else f.max_unfinished
        halt = halt_on_failure or f.halt_on_failure
        seen = out.get(f.flow_id)
        if seen is not None:
            limits = [n for n in (limit, seen.max_unfinished) if n is not None]
            limit = min(limits) if limits else None
            halt = halt or seen.halt_on_failure
        out[f.flow_id] = Rules(limit, halt)
    return out


def poll_delay(polls: int, cap: float | None) -> float:
    """Seconds before poll ``polls + 1`` of a wait: 1 s, doubling to 30 s; ``cap``
    (``--interval``) is the longest wait."""
    longest = LAST_POLL if cap is None else cap
    return min(longest, FIRST_POLL * 2.0 ** min(polls, 16))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a look at a flow's instances found."""

    unfinished: int  # instances not (known to be) in a final status
    failed: tuple[str, str] | None = None  # (instance id, status) of one that ended failed
    lookup_failed: str = ""  # why some could not be looked up (they count as unfinished)


class Instances:
    """The instances this ledger triggered for one flowId that may still be unfinished.

    ``add`` is told of every done key (done before the run, or triggered or reconciled in
    it); :meth:`look` asks the service about those not yet final. Held by the flow's
    worker only (one at a time), so it needs no lock.
    """

    __slots__ = ("flow_id", "open")

    def __init__(self, flow_id: int) -> None:
        self.flow_id = flow_id
        self.open: dict[int, str | None] = {}  # trigger time -> the recorded instance id

    def add(self, trigger_time: int, flow_instance_id: str | None) -> None:
        """A done key of the flow: watched until its instance is final."""
        self.open[trigger_time] = flow_instance_id

    def look(
        self,
        client: enos.Client,
        stop: threading.Event | None,
        many: LookUpMany,
        oldest: int | None = None,
    ) -> Verdict:
        """Ask about the open instances (one batch), or only the ``oldest`` few; forget
        those that are final. Keys not asked about count as unfinished."""
        times = sorted(self.open)
        if oldest is not None:
            times = times[:oldest]
        if not times:
            return Verdict(len(self.open))
        wanted = [lookup.Wanted(self.flow_id, t, self.open[t]) for t in times]
        verdict = self.settle(many(client, wanted, stop), times)
        return Verdict(
            verdict.unfinished + len(self.open) - len([t for t in times if t in self.open]),
            verdict.failed,
            verdict.lookup_failed,
        )

    def settle(
        self, seen: Mapping[tuple[int, int], lookup.Seen], times: Iterable[int] | None = None
    ) -> Verdict:
        """Take what a lookup saw of ``times`` (default: every open key): final instances
        leave; the first failed one is named; the others count as unfinished."""
        unfinished = 0
        failed: tuple[str, str] | None = None
        why = ""
        for t in sorted(self.open) if times is None else list(times):
            s = seen.get((self.flow_id, t))
            if s is None or s.state == lookup.LOOKUP_FAILED:
                unfinished += 1  # unknown counts as unfinished: never send past the limit
                why = why or (s.reason if s is not None else "not looked up")
                continue
            if s.state in HALT_STATES and failed is None:
                failed = (s.flow_instance_id or self.open[t] or f"{self.flow_id}@{t}", s.state)
            if s.final:
                del self.open[t]
            else:
                unfinished += 1
        return Verdict(unfinished, failed, why)


def held_back(count: int) -> str:
    """The reason of an entry pacing kept back."""
    return f"{HELD_BACK}: {count} unfinished"


def halted(instance: str, state: str) -> str:
    """The reason of an entry of a halted flow."""
    return f"{HALTED}: {instance} ended {state}"


class Gate(Enum):
    """Whether a flow may send its next entry now."""

    SEND = "send"
    WAIT = "wait"  # not yet: the flow waits (its ``not_before``), other flows go on
    BLOCKED = "blocked"  # not this run: the flow was refused, held back or halted


class Gates:
    """What a flow passes before each send: Get Flow before its first (contract section
    11, "Check each flow first"), the spacing a cured 62102 taught, pacing by unfinished
    instances and halting on a failed one. ``stopped()`` says (and acts on) whether the
    client stopped; ``rules(flow_id)`` gives a flow's :class:`Rules`."""

    def __init__(
        self,
        client: enos.Client,
        rules: Callable[[int], Rules],
        *,
        wait: bool,
        interval: float | None,
        stop: threading.Event,
        stopped: Callable[[], bool],
        log: Any,
        many: LookUpMany,
    ) -> None:
        self.many = many
        self.client = client
        self.rules = rules
        self.wait = wait
        self.interval = interval
        self.stop = stop
        self.stopped = stopped
        self.log = log

    def gate(self, work: FlowWork) -> Gate:
        """Whether the flow may send now: Get Flow first (once), then the spacing a cured
        62102 taught, then pacing by unfinished instances and halting on a failed one."""
        now = time.monotonic()
        if now < work.not_before:
            return Gate.WAIT
        if not work.checked:
            work.checked = True
            if not self.preflight(work):
                return Gate.BLOCKED
        if work.spacing and now < work.last_sent + work.spacing:
            work.not_before = work.last_sent + work.spacing
            return Gate.WAIT
        rules = self.rules(work.flow_id)
        if not rules.active or work.instances is None:
            return Gate.SEND
        # Look only when it can change the answer: pacing, once as many instances as the
        # limit may be unfinished; halting alone, every HALT_EVERY seconds over the oldest
        # instances (a flow's instances run one at a time, in order).
        possible = len(work.instances.open) + len(work.waiting)
        pacing = rules.max_unfinished is not None and possible >= rules.max_unfinished
        halting = rules.halt_on_failure and now >= work.halt_look
        if not pacing and not halting:
            work.polls = 0
            return Gate.SEND
        if rules.halt_on_failure:
            work.halt_look = now + HALT_EVERY
        verdict = work.instances.look(
            self.client, self.stop, self.many, None if pacing else HALT_OLDEST
        )
        if self.stop.is_set() or self.stopped():
            return Gate.WAIT
        if rules.halt_on_failure and verdict.failed is not None:
            work.held = halted(*verdict.failed)
            self.log.warning(
                "an instance of the flow ended failed: sending no more of it (halt on failure)",
                flow=work.flow_id,
                instance=verdict.failed[0],
                status=verdict.failed[1],
            )
            return Gate.BLOCKED
        unfinished = verdict.unfinished + len(work.waiting)  # an unknown outcome may be one
        if rules.max_unfinished is None or unfinished < rules.max_unfinished:
            work.polls = 0
            return Gate.SEND
        if not self.wait:
            work.held = held_back(unfinished)
            self.log.info(
                "held back: the flow has as many unfinished instances as allowed; the rest waits "
                "for the next apply (or use --wait)",
                flow=work.flow_id,
                unfinished=unfinished,
                max_unfinished=rules.max_unfinished,
            )
            return Gate.BLOCKED
        delay = poll_delay(work.polls, self.interval)
        work.polls += 1
        work.not_before = now + delay
        self.log.info(
            f"waiting for the flow's instances to finish: {unfinished} unfinished, "
            f"max-unfinished {rules.max_unfinished}",
            flow=work.flow_id,
            seconds=round(delay, 1),
            **({"lookup": verdict.lookup_failed} if verdict.lookup_failed else {}),
        )
        return Gate.WAIT

    def preflight(self, work: FlowWork) -> bool:
        """Get Flow before the flow's first trigger in the run; False when it is refused."""
        answer = self.client.get_flow(work.flow_id)
        if self.stopped():
            return False
        check = preflight(answer)
        if check.refused is not None:
            work.refused = check.refused
            self.log.warning(
                "flow refused: nothing is sent to it this run", flow=work.flow_id, reason=check.refused
            )
            return False
        if check.warning is not None:
            self.log.warning(
                f"{check.warning}; the triggers' answers decide", flow=work.flow_id
            )
        return True

    def learn_spacing(self, work: FlowWork, seconds: float) -> None:
        """The flow's first 62102 was cured by waiting: the service reads the one-minute
        rule by the wall clock. Space the flow's triggers that far apart for the rest of
        the run rather than pay a refusal, a lookup and a wait per entry."""
        work.spacing = seconds
        self.log.info(
            "the flow's first 62102 went away after waiting (the service counts the one-minute "
            "rule by the clock): its triggers are sent at least this far apart for the rest of "
            "the run",
            flow=work.flow_id,
            seconds=round(seconds, 1),
        )

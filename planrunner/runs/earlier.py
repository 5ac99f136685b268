"""What earlier runs left open: the keys of a flow that an earlier apply left ``unknown``
(an intent with no answer: a crash, a timeout) or ``failed`` (its last request may have
reached the service), looked up in one batch per flow (:func:`lookup.look_up_many`) before
anything of the flow is sent, once their requests are surely over (contract section 5)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from planrunner import enos, ledger, lookup
from planrunner.outcome import Entry, Outcome, Status
from planrunner.runs import AttemptIds, rerun
from planrunner.runs.decide import FOUND_WHY, Cause, Then, after_lookup
from planrunner.runs.flow import FlowWork, in_flight_wait
from planrunner.runs.pace import Instances, LookUpMany

if TYPE_CHECKING:
    from planrunner.runs.apply import Options


class Earlier:
    """Settles one run's view of what earlier runs left open, flow by flow."""

    def __init__(
        self,
        client: enos.Client,
        folded: ledger.Folded,
        options: Options,
        gateway: str,
        attempts: AttemptIds,
        stop: threading.Event,
        log: Any,
        many: LookUpMany,
    ) -> None:
        self.many = many
        self.client = client
        self.folded = folded
        self.options = options
        self.gateway = gateway
        self.attempts = attempts
        self.stop = stop
        self.log = log

    def begin(self, work: FlowWork, paced: bool) -> None:
        """Once per flow and run: watch its done keys when it is paced, and look up every
        key an earlier run left unknown or failed in one batch (:func:`lookup.look_up_many`),
        once the newest of their requests is surely over. Each is then settled, or marked
        to be sent again (``work.resend``)."""
        if paced:
            work.instances = Instances(work.flow_id)
            for e in work.entries:
                if self.folded.status(e.key) == ledger.DONE:
                    work.instances.add(e.trigger_time, self.folded.done.get(e.key))
        earlier = [
            (e, st)
            for e in work.entries
            if (st := self.folded.status(e.key)) in (ledger.UNKNOWN, ledger.FAILED)
        ]
        if earlier:
            now = time.time()
            wait, first = max(
                (in_flight_wait(_newest(self.folded.state(e.key)), self.options.in_flight, now), e)
                for e, _ in earlier
            )
            if not self.aged(wait, first):
                return  # stopped while waiting: not reached (run() reports them)
            # Each key is looked up where its newest round was sent (a rerun's sentTime).
            at = {e.key: rerun.newest_send(e, self.folded.state(e.key)).sends_at for e, _ in earlier}
            wanted = [lookup.Wanted(e.flow_id, at[e.key], None) for e, _ in earlier]
            seen = self.many(self.client, wanted, self.stop)
            for e, st in earlier:
                if self.stop.is_set():
                    return
                if self.settle(e, work, st, _as_lookup(seen.get((e.flow_id, at[e.key])))):
                    work.resend.add(e.key)
        work.begun = True

    def settle(self, e: Entry, work: FlowWork, status: str, look: enos.Lookup) -> bool:
        """Settle what an earlier run's attempts did, given the lookup of the key; True
        when the entry is to be sent.

        An open attempt (unknown), and a failed one too (its request may have reached the
        service), is looked up before anything is sent again, once the request is surely
        over: never sooner than read timeout plus margin after its intent (:meth:`begin`).
        """
        state = self.folded.state(e.key)
        newest = max(state.intents.items(), key=lambda kv: kv[1], default=None)
        gw = self.gateway
        # The newest round's records carry its round and sentTime; sent again, it is that round.
        s = rerun.newest_send(e, state, newest[0] if newest else None)
        if s.round:
            work.sends[e.key] = s
        if status == ledger.FAILED:
            if look.found:
                attempt = newest[0] if newest else self.attempts.next()
                work.record(
                    ledger.reconciled(
                        s, attempt, gateway=gw, found=True, flow_instance_id=look.flow_instance_id
                    )
                )
                work.report(e, Outcome(Status.RECONCILED, look.flow_instance_id, FOUND_WHY[Cause.CRASHED]))
                return False
            if look.found is None and not self.options.retry_unknown:
                self.log.warning(
                    "lookup failed; a failed entry is not sent again unverified", key=e.key, reason=look.reason
                )
                work.report(
                    e, Outcome(Status.FAILED, None, f"not sent again: the lookup failed: {look.reason}")
                )
                return False
            return True
        then = after_lookup(
            Cause.CRASHED, look.found, may_resend=True, retry_unknown=self.options.retry_unknown
        )
        if look.found is not None:
            for a in sorted(state.open_attempts):
                work.record(
                    ledger.reconciled(
                        rerun.newest_send(e, state, a), a, gateway=gw, found=look.found,
                        flow_instance_id=look.flow_instance_id,
                    )
                )  # fmt: skip
        if then is Then.RECONCILED:
            work.report(e, Outcome(Status.RECONCILED, look.flow_instance_id))
            return False
        if then is Then.KEEP_UNKNOWN:
            self.log.warning("outcome still unknown; not re-sending", key=e.key, reason=look.reason)
            work.report(e, Outcome(Status.UNKNOWN, None, look.reason))
            return False
        if look.found is None:
            self.log.warning(
                "lookup failed; sending anyway (--retry-unknown)", key=e.key, reason=look.reason
            )
        return True

    def aged(self, wait: float, e: Entry) -> bool:
        """Wait until an earlier run's request is surely over; False if stopped meanwhile."""
        if wait > 0:
            self.log.info(
                "an earlier run's request may still be in flight; waiting before the lookup",
                key=e.key,
                seconds=round(wait, 1),
            )
            return not self.stop.wait(wait)
        return True


def _newest(state: ledger.KeyState) -> str | None:
    """The ``at`` of a key's newest intent, open or not (RFC 3339 UTC sorts as text)."""
    return max(state.intents.values(), default=None)


def _as_lookup(seen: lookup.Seen | None) -> enos.Lookup:
    """A batched lookup's answer for one key as the single lookup's :class:`enos.Lookup`:
    a service status is found; "not found" (every search answered) is absent; anything
    else is a lookup that failed."""
    if seen is None:
        return enos.Lookup(None, None, "not looked up")
    if seen.state == lookup.NOT_FOUND:
        return enos.Lookup(False, None)
    if seen.state == lookup.LOOKUP_FAILED or seen.state.islower():
        return enos.Lookup(None, None, seen.reason or seen.state)
    return enos.Lookup(True, seen.flow_instance_id)

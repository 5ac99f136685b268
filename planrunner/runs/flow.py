"""One flow's work in an apply run: its entries, where its worker is, and the records and
outcomes waiting for the next durable write (nothing is reported before it is durable)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from planrunner import enos, ledger
from planrunner.outcome import Entry, Outcome, Status
from planrunner.runs.pace import Instances

NOT_RECORDED = "sent; outcome not recorded"


@dataclass(frozen=True, slots=True)
class Unresolved:
    """This run's request whose outcome is unknown, waiting until it is surely over."""

    due: float  # monotonic time after which the service can no longer act on it
    entry: Entry  # (its round and sent time: FlowWork.sends)
    attempt: str
    answer: enos.Answer
    resends: int  # how many times the entry was sent again after an unknown outcome


# -- the runner ------------------------------------------------------------------------------------


Settle = Callable[[Entry, Outcome], None]


class FlowWork:
    """One flowId's entries and where its worker is; held by one worker at a time.

    Records wait in ``_pending`` for the next write (they ride along with the next intent's
    fsync, or the flow's last flush); outcomes wait in ``_reports`` until every record
    before them is durable. Nothing is reported any other way.
    """

    __slots__ = (
        "_pending",
        "_reports",
        "begun",
        "checked",
        "entries",
        "flow_id",
        "halt_look",
        "held",
        "instances",
        "last_sent",
        "met_62102",
        "next",
        "not_before",
        "polls",
        "refused",
        "resend",
        "sends",
        "spacing",
        "waiting",
        "watched",
    )

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.flow_id = entries[0].flow_id if entries else 0
        self.next = 0
        self.refused: str | None = None  # why the service refused the flow, if it did
        self.held: str | None = None  # why pacing or a failure stopped the flow ("held back: ...")
        self.last_sent = 0.0  # monotonic time of the flow's last trigger request
        self.waiting: list[Unresolved] = []  # unknown outcomes waiting to be looked up, by due time
        self.begun = False  # the earlier runs' unknown and failed keys were looked up
        self.resend: set[str] = set()  # keys of earlier attempts found absent: to be sent
        self.checked = False  # Get Flow was asked (before the flow's first trigger)
        self.met_62102 = False  # the flow's first 62102 was seen (later ones teach nothing)
        self.spacing = 0.0  # seconds between the flow's triggers (learned from a cured 62102)
        self.not_before = 0.0  # monotonic time before which nothing is sent (a wait)
        self.polls = 0  # looks at unfinished instances since the flow's last send
        self.halt_look = 0.0  # monotonic time of the next look for a failed instance
        self.instances: Instances | None = None  # done keys watched for pacing and halting
        # Keys sent in another round than their first, or with parameters: key -> its Send
        # (a rerun round, or an earlier round's attempt to send again); see runs.rerun.
        self.sends: dict[str, ledger.Send] = {}
        self.watched: dict[str, Entry] = {}  # --wait: done keys whose instance may still fail
        self._pending: list[dict[str, object]] = []
        self._reports: list[tuple[Entry, Outcome]] = []

    def more(self) -> bool:
        """Whether entries, unknown outcomes to look up, or instances watched for a rerun
        (``--wait``) are left."""
        return self.next < len(self.entries) or bool(self.waiting) or bool(self.watched)

    def record(self, rec: dict[str, object]) -> None:
        """A record for the next durable write."""
        self._pending.append(rec)

    def report(self, entry: Entry, outcome: Outcome) -> None:
        """An outcome, reported once the records before it are durable. A done one joins
        the instances watched for pacing, when the flow is paced."""
        self._reports.append((entry, outcome))
        if self.instances is not None and outcome.status in _MADE:
            self.instances.add(entry.trigger_time, outcome.flow_instance_id)

    def write(self, writer: ledger.Sink, settle: Settle, *extra: dict[str, object]) -> None:
        """Make pending records (and ``extra``) durable, then report what waited on them."""
        batch = [*self._pending, *extra]
        try:
            if batch:
                writer.append(batch)
        except Exception:
            # Nothing of the batch is known durable. An entry whose request left is
            # "unknown" (sent; outcome not recorded), never "pending" (not sent): the next
            # run looks it up. One that was never sent stays what it was reported as.
            self._pending = []
            reports, self._reports = self._reports, []
            for entry, outcome in reports:
                settle(entry, _unrecorded(outcome))
            raise
        self._pending = []
        reports, self._reports = self._reports, []
        for entry, outcome in reports:
            settle(entry, outcome)


_MADE = frozenset((Status.TRIGGERED, Status.RECONCILED))
_SENT = frozenset((Status.TRIGGERED, Status.RECONCILED, Status.FAILED, Status.UNKNOWN))


def _unrecorded(outcome: Outcome) -> Outcome:
    """What an outcome whose records could not be written is reported as."""
    if outcome.status not in _SENT:
        return outcome
    why = NOT_RECORDED if outcome.error is None else f"{NOT_RECORDED} ({outcome.error})"
    return Outcome(Status.UNKNOWN, None, why)


def in_flight_wait(at: str | None, window: float, now: float) -> float:
    """Seconds to wait before a request whose intent is dated ``at`` is surely over.

    Never more than ``window``: an intent dated in the future (a runner with a fast clock)
    counts as made now, and so does one whose date cannot be read, however far off it is.
    """
    if not at:
        return 0.0
    try:
        sent = datetime.fromisoformat(at).timestamp()
    except (ValueError, OverflowError, OSError):
        return window
    if not sent <= now:  # the future, or not a number at all
        return window
    return min(window, max(0.0, sent + window - now))

"""The fold (DESIGN 4): records, in any order, to per-key states.

:class:`KeyState` holds the rules for one key; :func:`fold_into` is the one loop every
backend feeds (the file its decoded lines, PostgreSQL its rows, ``ledger log``/``verify``
a list of records); :class:`Folded` is the result, read through its methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from planrunner import log
from planrunner.ledger.records import SIM_GATEWAY
from planrunner.outcome import KeyStatus

DONE = KeyStatus.DONE
UNKNOWN = KeyStatus.UNKNOWN
FAILED = KeyStatus.FAILED
PENDING = KeyStatus.PENDING
CANCELLED = KeyStatus.CANCELLED


@dataclass(slots=True)
class Round:
    """One round of a key (0: the entry's first instance; 1, 2, ...: its reruns), folded in
    any order by section 4's rules: done, unknown, failed or pending."""

    done: bool = False
    flow_instance_id: str | None = None
    intents: dict[str, str] = field(default_factory=dict)  # attempt -> its intent's ``at``
    closed: set[str] = field(default_factory=set)
    failed: bool = False
    error: str | None = None
    # The parameters the settling record (triggered, reconciled found) carries.
    parameters: dict[str, str] | None = None
    settled_sent: int | None = None  # the settling record's sentTime
    sent: dict[str, int] = field(default_factory=dict)  # attempt -> sentTime (not done)
    asked: dict[str, dict[str, str]] = field(default_factory=dict)  # attempt -> its intent's parameters
    cancelled: bool = False  # a ``cancelled`` record names this round

    @property
    def status(self) -> KeyStatus:
        """done, unknown, failed or pending."""
        if self.done:
            return DONE
        if self.intents.keys() - self.closed:
            return UNKNOWN
        return FAILED if self.failed else PENDING

    @property
    def sent_time(self) -> int | None:
        """The trigger time this round sent: the settling attempt's, else its latest."""
        if self.done:
            return self.settled_sent
        return max(self.sent.values(), default=None)

    def view(self) -> tuple[object, ...]:
        """What the round says that compaction must keep: status, instance, parameters, sent
        times, open attempts (their intent's time, sent time and parameters), the error."""
        opened = {
            a: (self.intents[a], self.sent.get(a), self.asked.get(a))
            for a in self.intents.keys() - self.closed
        }
        return (
            str(self.status),
            self.flow_instance_id,
            self.cancelled,
            self.parameters,
            self.sent_time,
            sorted(self.sent.values()),
            opened,
            self.failed,
            self.error,
        )

    def add(self, rec: dict[str, Any]) -> None:
        """Fold one record of this round in."""
        event = rec["event"]
        if event == "cancelled":
            self.cancelled = True
            return
        if self.done or event == "unknown":
            # Done is absorbing: any triggered or found attempt settles the round. "unknown"
            # records say why an attempt is open; the open intent already says it is.
            return
        attempt = rec["attempt"]
        sent = rec.get("sentTime")
        if sent is not None:
            self.sent[attempt] = sent
        if event == "intent":
            self.intents[attempt] = str(rec.get("at", ""))
            params = rec.get("parameters")
            if params is not None:
                self.asked[attempt] = params
        elif event == "triggered":
            self._settle(rec)
        elif event == "failed":
            self.closed.add(attempt)
            self.failed = True
            self.error = f"{_text(rec.get('code'))}: {_text(rec.get('msg'))}"
        elif event == "reconciled":
            if rec.get("found") is True:
                self._settle(rec)
            else:
                self.closed.add(attempt)
        elif event == "aborted":
            self.closed.add(attempt)  # nothing left the machine: the round is as it was

    def _settle(self, rec: dict[str, Any]) -> None:
        self.done = True
        iid = rec.get("flowInstanceId")
        self.flow_instance_id = iid if isinstance(iid, str) else None
        params = rec.get("parameters")
        self.parameters = params if isinstance(params, dict) else None
        sent = rec.get("sentTime")
        self.settled_sent = sent if type(sent) is int else None
        self.intents.clear()  # cleared, not replaced: no new objects per settled round
        self.closed.clear()
        self.failed = False  # what failed before does not matter once done
        self.error = None
        self.sent.clear()
        self.asked.clear()


class KeyState:
    """What the ledger says of one key, folded in any order: the state of each round.

    The key's state is its **newest round's**: the highest round that is not pending (a
    round exists once it has an intent; one whose every attempt was aborted or found not
    made is as if never sent, so the key is as it was). Round 0 is the entry's first
    instance. The attributes below (``status``, ``done``, ``intents``, ...) are the newest
    round's; :attr:`rounds` holds every round.
    """

    __slots__ = ("rounds",)

    def __init__(
        self,
        done: bool = False,
        flow_instance_id: str | None = None,
        intents: dict[str, str] | None = None,
        *,
        parameters: dict[str, str] | None = None,
        cancelled: bool = False,
    ) -> None:
        self.rounds: dict[int, Round] = {}  # only rounds with records (a fresh state has none)
        if done or intents or cancelled:
            self.rounds[0] = Round(
                done=done,
                flow_instance_id=flow_instance_id,
                intents=intents if intents is not None else {},
                parameters=parameters,
                cancelled=cancelled,
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyState):
            return NotImplemented
        return self.rounds == other.rounds

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"KeyState(rounds={self.rounds!r})"

    @property
    def round(self) -> int:
        """The newest round (0 when the key has no rerun)."""
        rounds = self.rounds
        if len(rounds) == 1 and 0 in rounds:
            return 0  # the common case: no rerun
        for r in sorted(rounds, reverse=True):
            if rounds[r].status is not PENDING:
                return r
        return 0

    @property
    def newest(self) -> Round:
        """The newest round's state (an empty one for a key without records of round 0)."""
        return self.rounds.get(self.round) or Round()

    @property
    def status(self) -> KeyStatus:
        """done, unknown, failed or pending, as docs/architecture.md ("The fold") defines them."""
        return self.newest.status

    @property
    def done(self) -> bool:
        """Whether the newest round is done."""
        return self.newest.done

    @property
    def flow_instance_id(self) -> str | None:
        """The newest round's flowInstanceId (None when not done or not recorded)."""
        return self.newest.flow_instance_id

    @property
    def intents(self) -> dict[str, str]:
        """The newest round's attempts with an intent (attempt -> its ``at``)."""
        return self.newest.intents

    @property
    def closed(self) -> set[str]:
        """The newest round's closed attempts."""
        return self.newest.closed

    @property
    def failed(self) -> bool:
        """Whether an attempt of the newest round failed."""
        return self.newest.failed

    @property
    def error(self) -> str | None:
        """The newest round's last failure, ``code: msg``."""
        return self.newest.error

    @property
    def cancelled(self) -> bool:
        """Whether the newest round is done and a ``cancelled`` record names it."""
        newest = self.newest
        return newest.done and newest.cancelled

    @property
    def sent_time(self) -> int | None:
        """The trigger time the newest round sent (None for round 0: the key's own)."""
        return self.newest.sent_time if self.round else None

    @property
    def parameters(self) -> dict[str, str] | None:
        """The parameters of the attempt that made the newest round done (None: none, or
        not done)."""
        return self.newest.parameters

    @property
    def open_attempts(self) -> set[str]:
        """The newest round's attempts with an intent and no outcome yet."""
        newest = self.newest
        return set(newest.intents.keys() - newest.closed)

    @property
    def last_intent_at(self) -> str | None:
        """The ``at`` of the newest round's newest open intent (RFC 3339 UTC sorts as text)."""
        newest = self.newest
        return max((newest.intents[a] for a in self.open_attempts), default=None)

    def sent_at(self, attempt: str) -> int | None:
        """The sentTime of one of the newest round's open or closed attempts (None in round 0)."""
        return self.newest.sent.get(attempt)

    def asked(self, attempt: str) -> dict[str, str] | None:
        """The parameters the intent of one of the newest round's attempts carried."""
        return self.newest.asked.get(attempt)

    def add(self, rec: dict[str, Any]) -> None:
        """Fold one record in (into its round)."""
        rnd = rec.get("round") or 0
        state = self.rounds.get(rnd)
        if state is None:
            state = self.rounds[rnd] = Round()
        state.add(rec)

    def settles_plainly(self) -> bool:
        """Done in round 0 with no other round: the fold keeps it as one dict slot."""
        rounds = self.rounds
        return len(rounds) == 1 and 0 in rounds and rounds[0].done


def _text(value: object) -> str:
    """A ledger field for a message: absent or null reads as "none", never Python's None."""
    return "none" if value is None else str(value)



class Folded:
    """Per-key states of a ledger. Done keys (the bulk of a long ledger) cost one dict slot."""

    __slots__ = (
        "cancelled",
        "done",
        "ignored",
        "open",
        "orphans",
        "other_gateways",
        "parameters",
        "reruns",
        "torn_at",
        "torn_line",
        "torn_middle",
    )

    def __init__(self) -> None:
        # Keys outside the plan under ``orphans_of`` prefixes: key -> state (few, usually).
        self.orphans: dict[str, KeyState] = {}
        self.done: dict[str, str | None] = {}  # key -> its newest round's flowInstanceId
        self.cancelled: set[str] = set()  # done keys whose newest round ``cancel`` cancelled
        self.open: dict[str, KeyState] = {}  # keys not done: unknown, failed or pending
        # Done keys whose settling record carried parameters: key -> parameters.
        self.parameters: dict[str, dict[str, str]] = {}
        # Keys with records of a rerun round (done or not): key -> every round's state.
        self.reruns: dict[str, KeyState] = {}
        self.ignored = 0  # records of the other kind of run (simulator vs real), not counted
        # Records of the fold's keys written against another real gateway: gateway -> count.
        self.other_gateways: dict[str, int] = {}
        self.torn_at: int | None = None
        self.torn_line: int | None = None
        # Torn records a merge moved into the middle: (offset, length without newline, line).
        self.torn_middle: list[tuple[int, int, int]] = []

    def status(self, key: str) -> KeyStatus:
        """done, cancelled, unknown, failed or pending (of the key's newest round)."""
        if key in self.done:
            return CANCELLED if key in self.cancelled else DONE
        state = self.open.get(key)
        return state.status if state is not None else PENDING

    def state(self, key: str) -> KeyState:
        """The key's state (a fresh one for a key the ledger never mentions)."""
        state = self.reruns.get(key) or self.open.get(key)
        if state is not None:
            return state
        if key in self.done:
            return KeyState(
                done=True,
                flow_instance_id=self.done[key],
                parameters=self.parameters.get(key),
                cancelled=key in self.cancelled,
            )
        return KeyState()

    def instance_id(self, key: str) -> str | None:
        """The flowInstanceId of a done key's newest round (None when not done or not recorded)."""
        return self.done.get(key)

    def is_done(self, key: str) -> bool:
        """Whether the key is done (cancelled keys are done too)."""
        return key in self.done

    def open_attempts(self, key: str) -> set[str]:
        """The key's attempts (of its newest round) with an intent and no outcome yet."""
        state = self.open.get(key)
        return state.open_attempts if state is not None else set()

    def last_intent_at(self, key: str) -> str | None:
        """The ``at`` of the key's newest open intent."""
        state = self.open.get(key)
        return state.last_intent_at if state is not None else None

    def sent_times(self, org_id: str, flow_id: int) -> set[int]:
        """The minutes the rerun rounds of one flow's keys were sent at (where they may hold
        an instance): a done round's instance's, and every attempt's of a round not done."""
        prefix = f"{org_id}/{flow_id}/"
        return {
            sent
            for key, state in self.reruns.items()
            if key.startswith(prefix)
            for rnd in state.rounds.values()
            for sent in (*rnd.sent.values(), rnd.settled_sent)
            if sent is not None
        }

    def all_keys(self) -> Iterator[str]:
        """Every key the fold holds a state for (done first)."""
        yield from self.done
        yield from self.open


def fold_into(
    out: Folded,
    records: Iterable[dict[str, Any]],
    keys: set[str] | None = None,
    *,
    sim: bool = False,
    orphans_of: set[str] | None = None,
    gateway: str | None = None,
    other_gateways_count: bool = False,
) -> Folded:
    """Fold valid ``records`` into ``out``: the one fold loop, whatever the backend.

    Only ``keys`` count when given; with ``orphans_of`` (key prefixes ``orgId/flowId/``),
    keys not in ``keys`` under those prefixes are folded too, into ``Folded.orphans``: what
    the ledger holds that the plan no longer yields. Records of simulator runs
    (``gateway: sim``) count only when ``sim`` is true, and real ones only when it is
    false: a demo can never mark a real entry done. With ``gateway`` (``scheme://host[:port]``,
    as records name it), records that name another gateway do not count either (unless
    ``other_gateways_count``: ``plan``, which has no ``--gateway``); either way they are
    counted per gateway in ``Folded.other_gateways``.

    Records of round 0 (the bulk) take a path without state objects; a key with a record
    of a rerun round keeps a :class:`KeyState` (in ``open`` while folding, then in
    ``reruns``).
    """
    done, open_, cancelled, others = out.done, out.open, out.cancelled, out.other_gateways
    params = out.parameters
    # Keys whose only record so far is one intent: key -> (attempt, at), and the parameters
    # of those intents that carry them. Inlined on purpose: this runs once per record of a
    # ledger that may hold millions.
    lone: dict[str, tuple[str, str]] = {}
    asked: dict[str, dict[str, str]] = {}
    ignored = 0
    for rec in records:
        gw = rec.get("gateway")
        if (gw == SIM_GATEWAY) is not sim:
            ignored += 1
            continue
        key = rec["key"]
        if gateway is not None and gw != gateway and type(gw) is str:
            if keys is None or key in keys or (orphans_of and key[: key.rfind("/") + 1] in orphans_of):
                others[gw] = others.get(gw, 0) + 1
            if not other_gateways_count:
                continue
        event = rec["event"]
        if keys is not None and key not in keys:
            if orphans_of and key[: key.rfind("/") + 1] in orphans_of:
                if event == "cancelled" and "round" not in rec:
                    cancelled.add(key)
                else:
                    out.orphans.setdefault(key, KeyState()).add(rec)
            continue
        if "round" in rec:
            state = open_.get(key)
            if state is None:  # the key's first record of a rerun round
                state = open_[key] = _state_of(key, done, params, lone, asked)
            state.add(rec)
            continue
        if event == "cancelled":
            cancelled.add(key)  # round 0's; the newest round decides (see _finish)
            continue
        if key in done:
            continue  # round 0 is done: done is absorbing
        state = open_.get(key)
        if state is None:
            if event == "triggered":  # the common case, settled without a state object
                iid = rec.get("flowInstanceId")
                done[key] = iid if type(iid) is str else None
                if "parameters" in rec:
                    params[key] = rec["parameters"]
                if lone.pop(key, None) is not None and asked:
                    asked.pop(key, None)
                continue
            if event == "intent" and key not in lone:
                # Most intents meet their result next: no state object yet.
                lone[key] = (rec["attempt"], rec["at"])
                if "parameters" in rec:
                    asked[key] = rec["parameters"]
                continue
            state = open_[key] = _state_of(key, done, params, lone, asked)
        state.add(rec)
        if state.settles_plainly():
            done[key] = state.flow_instance_id
            if state.parameters is not None:
                params[key] = state.parameters
            del open_[key]
    for key, (attempt, at) in lone.items():
        state = open_[key] = KeyState(intents={attempt: at})
        if key in asked:
            state.rounds[0].asked[attempt] = asked[key]
    _finish(out)
    out.ignored += ignored
    return out


def _state_of(
    key: str,
    done: dict[str, str | None],
    params: dict[str, dict[str, str]],
    lone: dict[str, tuple[str, str]],
    asked: dict[str, dict[str, str]],
) -> KeyState:
    """A state object for a key the fast path held as a done slot or a lone intent."""
    if key in done:
        return KeyState(done=True, flow_instance_id=done.pop(key), parameters=params.pop(key, None))
    state = KeyState()
    if key in lone:
        attempt, at = lone.pop(key)
        state.rounds[0] = Round(intents={attempt: at})
        if key in asked:
            state.rounds[0].asked[attempt] = asked.pop(key)
    return state


def _finish(out: Folded) -> None:
    """Place keys with rerun rounds by their newest round, and keep ``cancelled`` to keys
    whose newest round is done and cancelled."""
    done, open_, cancelled = out.done, out.open, out.cancelled
    for key in [k for k, st in open_.items() if len(st.rounds) > 1 or 0 not in st.rounds]:
        state = out.reruns[key] = open_[key]
        newest = state.newest
        if newest.done:
            del open_[key]
            done[key] = newest.flow_instance_id
            if newest.parameters is not None:
                out.parameters[key] = newest.parameters
    for key, state in (*out.reruns.items(), *out.orphans.items()):
        if key in cancelled:  # round 0's cancelled records took the fast path
            state.rounds.setdefault(0, Round()).cancelled = True
        newest = state.newest
        if newest.done and newest.cancelled:
            cancelled.add(key)
        else:
            cancelled.discard(key)
    cancelled &= done.keys() | out.orphans.keys()


def gateway_host(gateway: str) -> str:
    """``host[:port]`` of a recorded gateway, for output (never a user or a password)."""
    rest = gateway.partition("://")[2] or gateway
    host = rest.partition("/")[0].rpartition("@")[2][:200]
    return "".join(c if c.isprintable() else "?" for c in host) or "?"


def note_folded(
    folded: Folded, name: str, gateway: str | None, said: set[object], *, counted: bool = False
) -> None:
    """Warn about what a fold left out (or ``counted``): records of other gateways; and torn
    middle lines (each once per ``said``, which a backend keeps: ``status --watch`` folds
    every poll)."""
    logger = log.get("ledger")
    seen = (tuple(sorted(folded.other_gateways.items())), gateway, tuple(folded.torn_middle))
    if seen in said:
        return
    said.add(seen)
    if folded.other_gateways and gateway is not None:
        ranked = sorted(folded.other_gateways.items(), key=lambda kv: (-kv[1], kv[0]))
        named = ", ".join(f"{n} for {gateway_host(gw)}" for gw, n in ranked[:5])
        more = f" and {len(ranked) - 5} more gateways" if len(ranked) > 5 else ""
        total = sum(folded.other_gateways.values())
        if counted:
            text = (
                f"{total} ledger records were written against another gateway than the plan's "
                f"({named}{more}): they are counted here, but an apply against "
                f"{gateway_host(gateway)} ignores them and sends those entries; an apply with "
                "the same --gateway counts them"
            )
        else:
            text = (
                f"ignored {total} ledger records written against another gateway ({named}{more}); "
                f"they count only for that gateway, not for {gateway_host(gateway)}"
            )
        logger.warning(text, ledger=name)
    for _, _, number in folded.torn_middle[:5]:
        logger.warning(
            "ignored an incomplete record in the middle of the ledger (a torn write that a git "
            "merge moved there; it was never whole, so nothing was sent on it); the next apply "
            "blanks it",
            ledger=name,
            line=number,
        )

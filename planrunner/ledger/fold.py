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
class KeyState:
    """What the ledger says of one key, folded in any order."""

    done: bool = False
    flow_instance_id: str | None = None
    intents: dict[str, str] = field(default_factory=dict)  # attempt -> its intent's ``at``
    closed: set[str] = field(default_factory=set)
    failed: bool = False
    error: str | None = None

    @property
    def status(self) -> KeyStatus:
        """done, unknown, failed or pending, as docs/architecture.md ("The fold") defines them."""
        if self.done:
            return DONE
        if self.intents.keys() - self.closed:
            return UNKNOWN
        return FAILED if self.failed else PENDING

    @property
    def open_attempts(self) -> set[str]:
        """Attempts with an intent and no outcome yet."""
        return set(self.intents.keys() - self.closed)

    @property
    def last_intent_at(self) -> str | None:
        """The ``at`` of the newest open intent (RFC 3339 UTC sorts as text)."""
        open_ = self.open_attempts
        return max((self.intents[a] for a in open_), default=None)

    def add(self, rec: dict[str, Any]) -> None:
        """Fold one record in."""
        event = rec["event"]
        if self.done:
            return  # done is absorbing: any triggered or found attempt settles the key
        attempt = rec["attempt"]
        if event == "intent":
            self.intents[attempt] = str(rec.get("at", ""))
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
            self.closed.add(attempt)  # nothing left the machine: the key is as it was
        # "unknown" records say why an attempt is open; the open intent already says it is.

    def _settle(self, rec: dict[str, Any]) -> None:
        self.done = True
        iid = rec.get("flowInstanceId")
        self.flow_instance_id = iid if isinstance(iid, str) else None
        self.intents = {}
        self.closed = set()


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
        "torn_at",
        "torn_line",
        "torn_middle",
    )

    def __init__(self) -> None:
        # Keys outside the plan under ``orphans_of`` prefixes: key -> state (few, usually).
        self.orphans: dict[str, KeyState] = {}
        self.done: dict[str, str | None] = {}  # key -> flowInstanceId
        self.cancelled: set[str] = set()  # done keys whose instance ``cancel`` cancelled
        self.open: dict[str, KeyState] = {}  # keys not done: unknown, failed or pending
        self.ignored = 0  # records of the other kind of run (simulator vs real), not counted
        # Records of the fold's keys written against another real gateway: gateway -> count.
        self.other_gateways: dict[str, int] = {}
        self.torn_at: int | None = None
        self.torn_line: int | None = None
        # Torn records a merge moved into the middle: (offset, length without newline, line).
        self.torn_middle: list[tuple[int, int, int]] = []

    def status(self, key: str) -> KeyStatus:
        """done, cancelled, unknown, failed or pending."""
        if key in self.done:
            return CANCELLED if key in self.cancelled else DONE
        state = self.open.get(key)
        return state.status if state is not None else PENDING

    def state(self, key: str) -> KeyState:
        """The key's state (a fresh one for a key the ledger never mentions)."""
        if key in self.done:
            return KeyState(done=True, flow_instance_id=self.done[key])
        return self.open.get(key) or KeyState()


    def instance_id(self, key: str) -> str | None:
        """The flowInstanceId of a done key (None when not done or not recorded)."""
        return self.done.get(key)

    def is_done(self, key: str) -> bool:
        """Whether the key is done (cancelled keys are done too)."""
        return key in self.done

    def open_attempts(self, key: str) -> set[str]:
        """The key's attempts with an intent and no outcome yet."""
        state = self.open.get(key)
        return state.open_attempts if state is not None else set()

    def last_intent_at(self, key: str) -> str | None:
        """The ``at`` of the key's newest open intent."""
        state = self.open.get(key)
        return state.last_intent_at if state is not None else None

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
    """
    done, open_, cancelled, others = out.done, out.open, out.cancelled, out.other_gateways
    # Keys whose only record so far is one intent: key -> (attempt, at). Inlined on purpose:
    # this runs once per record of a ledger that may hold millions.
    lone: dict[str, tuple[str, str]] = {}
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
        if event == "cancelled":
            if keys is None or key in keys or (orphans_of and key[: key.rfind("/") + 1] in orphans_of):
                cancelled.add(key)
            continue
        if key in done:
            continue
        if keys is not None and key not in keys:
            if orphans_of and key[: key.rfind("/") + 1] in orphans_of:
                out.orphans.setdefault(key, KeyState()).add(rec)
            continue
        if event == "triggered":  # the common case, settled without a state object
            iid = rec.get("flowInstanceId")
            done[key] = iid if type(iid) is str else None
            lone.pop(key, None)
            open_.pop(key, None)
            continue
        state = open_.get(key)
        if state is None:
            if event == "intent" and key not in lone:
                # Most intents meet their result next: no state object yet.
                lone[key] = (rec["attempt"], rec["at"])
                continue
            state = open_[key] = KeyState()
            if key in lone:
                attempt, at = lone.pop(key)
                state.intents[attempt] = at
        state.add(rec)
        if state.done:
            done[key] = state.flow_instance_id
            del open_[key]
    for key, (attempt, at) in lone.items():
        open_[key] = KeyState(intents={attempt: at})
    cancelled &= done.keys() | {k for k, st in out.orphans.items() if st.done}
    out.ignored += ignored
    return out


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

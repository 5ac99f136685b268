"""Saved plans: what ``plan --out SAVED`` writes and ``apply SAVED`` checks and narrows to.

A saved plan pins what a reviewer saw: the plan file's bytes (by SHA-256), the moment
``to: now`` meant, the flow selection and ``--max-triggers``, and every entry with its status
at plan time. ``apply SAVED`` refuses (exit 2) when the plan file changed since, and sends
only the saved entries that were not done at plan time and still are not.

Business dates, parameters and the pacing and rerun keys are part of what is reviewed: each
entry carries its ``calDt`` and filled ``parameters``, ``flows`` each flow's keys
(:func:`flow_settings`), and ``target`` the ``serverTimezone``; they enter the saved file's
digest, and ``apply SAVED`` refuses (stale) when the plan now says otherwise.

``target`` records ``orgId``, ``userId`` and ``api`` as they were at plan time (``${VAR}``
expanded: they are not secrets, and they decide the ledger keys and who triggers), and
``gateway`` as written in the plan, so a gateway kept in a CI variable stays out of the
file; apply expands it (or takes ``--gateway``) as for any plan. The file is recognised by
its content (a JSON object with ``formatVersion`` and ``"kind": "planrunner-saved-plan"``),
never by its name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from planrunner import plan as planlib
from planrunner import times
from planrunner.errors import UsageError
from planrunner.outcome import Status
from planrunner.plan import Flow, Plan
from planrunner.resolve import Entry
from planrunner.select import Selection

KIND = "planrunner-saved-plan"
FORMAT_VERSION = 1
SETTLED = (Status.DONE, Status.CANCELLED)
_SNIFF = 4096  # a saved plan starts with its marker within this many bytes


@dataclass(frozen=True, slots=True)
class Saved:
    """A saved plan as read back."""

    path: str  # the saved plan file itself
    plan: str  # the plan file's path as given to `plan`
    sha256: str  # of the plan file's bytes
    now: int
    target: dict[str, str]
    selection: Selection
    max_triggers: int
    statuses: dict[str, str]  # entry key -> status at plan time
    digest: str  # SHA-256 of the saved file's bytes
    # entry key -> its filled parameters as reviewed (None: the flow has none)
    parameters: dict[str, dict[str, str] | None] | None = None  # None: saved before they were
    flows: list[dict[str, Any]] | None = None  # flow_settings() at plan time, if recorded

    @property
    def to_send(self) -> set[str]:
        """Keys of the entries that were not done at plan time."""
        return {k for k, s in self.statuses.items() if s not in SETTLED}

    def plan_bytes(self) -> bytes:
        """The plan file's bytes, refused (exit 2) when they changed since the plan was saved."""
        try:
            with open(self.plan, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise UsageError(
                f"saved plan {self.path}: cannot read its plan {self.plan}: {e.strerror or e}"
            ) from None
        if hashlib.sha256(raw).hexdigest() != self.sha256:
            raise UsageError(
                f"saved plan is stale: {self.plan} changed since it was saved in {self.path}; "
                "run plan --out again and review it"
            )
        return raw

    def check_target(self, plan: Plan) -> None:
        """Refuse when the environment now gives another org, user or API version."""
        now = {"orgId": plan.target.org_id, "userId": plan.target.user_id, "api": plan.target.api}
        for key, value in now.items():
            if self.target.get(key) != value:
                raise UsageError(
                    f"saved plan {self.path} was made for target.{key} "
                    f"{self.target.get(key)!r}, but it is now {value!r}"
                )
        if self.flows is None:
            return  # saved by a planrunner that did not record them: the plan's bytes decide
        zone = plan.target.server_timezone
        if self.target.get("serverTimezone") != zone:
            raise UsageError(
                f"saved plan is stale: target.serverTimezone was "
                f"{self.target.get('serverTimezone')!r} when {self.path} was saved, and is now "
                f"{zone!r} (business dates and parameters change with it); run plan --out again"
            )
        current = {f["name"]: f for f in flow_settings(plan)}
        for was in self.flows:
            name = str(was.get("name"))
            if current.get(name) != was:
                raise UsageError(
                    f"saved plan is stale: flow {name}'s dates, parameters or pacing keys changed "
                    f"since {self.path} was saved; run plan --out again and review it"
                )

    def narrow(self, entries: Sequence[Entry]) -> list[Entry]:
        """The entries this saved plan lets apply send (the others are left out)."""
        keep = self.to_send
        return [e for e in entries if e.key in keep]


def flow_settings(plan: Plan) -> list[dict[str, Any]]:
    """What a saved plan records of each flow beyond its entries: business dates,
    parameters (as written) and the pacing and rerun keys in force."""
    return [_settings(f) for f in plan.flows if f.enabled]


def _settings(flow: Flow) -> dict[str, Any]:
    dates = None
    if flow.dates:
        days = (
            [str(d) for d in flow.dates_window]
            if flow.dates_window is not None
            else [str(d) for d in flow.dates_listed or ()]
        )
        dates = {"window" if flow.dates_window else "listed": days, "timeMs": flow.time_of_day}
    return {
        "name": flow.name,
        "flowId": flow.flow_id,
        "dates": dates,
        "parameters": dict(flow.parameters) if flow.parameters else None,
        "maxUnfinished": flow.max_unfinished,
        "haltOnFailure": flow.halt_on_failure,
        "rerunFailed": flow.rerun_failed,
    }


def dumps(
    plan: Plan,
    plan_sha256: str,
    now: int,
    selection: Selection,
    max_triggers: int,
    rows: Sequence[tuple[Entry, str]],
) -> bytes:
    """The saved plan's bytes: one JSON object, an entry per line so it diffs well."""
    raw_target = plan.raw_target
    target = {
        "gateway": str(raw_target.get("gateway", plan.target.gateway)),
        "orgId": plan.target.org_id,
        "userId": plan.target.user_id,
        "api": plan.target.api,
    }
    if plan.target.server_timezone is not None:
        target["serverTimezone"] = plan.target.server_timezone
    head: dict[str, Any] = {
        "kind": KIND,
        "formatVersion": FORMAT_VERSION,
        "plan": plan.path,
        "sha256": plan_sha256,
        "now": now,
        "target": target,
        "selection": selection.as_json(),
        "maxTriggers": max_triggers,
        "flows": flow_settings(plan),
    }
    zone = plan.target.server_zone
    flows = {f.name: f for f in plan.flows}
    lines = [
        json.dumps(
            {
                "key": e.key,
                "flow": e.flow,
                "flowId": e.flow_id,
                "triggerTime": e.trigger_time,
                "time": e.local_time,
                "calDt": times.cal_dt(e.trigger_time, zone) if zone is not None else None,
                "parameters": _parameters(flows.get(e.flow), e, zone),
                "status": status,
            },
            ensure_ascii=False,
        )
        for e, status in rows
    ]
    text = json.dumps(head, ensure_ascii=False)[:-1] + ', "entries": [\n' + ",\n".join(lines)
    return (text + "\n]}\n").encode("utf-8")


def write(path: str, data: bytes, plan_path: str | None = None, ledger: str | None = None) -> str:
    """Write the saved plan; return its digest (SHA-256 of its bytes).

    Never over the plan or the ledger (by path or inode), never through a symlink; written
    to a temporary file and renamed (exit 2 otherwise; see :func:`ledgertools.replacing`).
    """
    from planrunner.ledger import tools as ledgertools

    inputs = [(p, name) for p, name in ((plan_path, "the plan"), (ledger, "the ledger")) if p]
    ledgertools.write_bytes(path, data, inputs, "--out")
    return hashlib.sha256(data).hexdigest()


def read_if_saved(path: str) -> Saved | None:
    """The saved plan at ``path``, or None when the file is something else (a YAML plan)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None  # the plan loader reports it
    if raw.lstrip()[:1] != b"{" or KIND.encode() not in raw[:_SNIFF]:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("kind") != KIND or "formatVersion" not in doc:
        return None
    if doc["formatVersion"] != FORMAT_VERSION:
        raise UsageError(
            f"{path}: saved plan formatVersion {doc['formatVersion']!r} is not supported "
            f"(this planrunner reads {FORMAT_VERSION})"
        )
    try:
        selection = doc["selection"]
        return Saved(
            path=path,
            plan=str(doc["plan"]),
            sha256=str(doc["sha256"]),
            now=int(doc["now"]),
            target={str(k): str(v) for k, v in doc["target"].items()},
            selection=Selection(tuple(selection["flow"]), tuple(selection["exclude"])),
            max_triggers=int(doc["maxTriggers"]),
            statuses={str(e["key"]): str(e["status"]) for e in doc["entries"]},
            digest=hashlib.sha256(raw).hexdigest(),
            parameters=(
                {str(e["key"]): _strings(e["parameters"]) for e in doc["entries"]}
                if "flows" in doc
                else None
            ),
            flows=[dict(f) for f in doc["flows"]] if "flows" in doc else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"{path}: not a complete saved plan ({type(e).__name__}: {e})") from None


def _parameters(flow: Flow | None, entry: Entry, zone: tzinfo | None) -> dict[str, str] | None:
    return None if flow is None else planlib.entry_parameters(flow, entry, zone)


def _strings(value: object) -> dict[str, str] | None:
    """An entry's saved parameters: a mapping of strings, or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"parameters: expected an object, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}

"""Saved plans: what ``plan --out SAVED`` writes and ``apply SAVED`` checks and narrows to.

A saved plan pins what a reviewer saw: the plan file's bytes (by SHA-256), the moment
``to: now`` meant, the flow selection and ``--max-triggers``, and every entry with its status
at plan time. ``apply SAVED`` refuses (exit 2) when the plan file changed since, and sends
only the saved entries that were not done at plan time and still are not.

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
from typing import Any

from planrunner.errors import UsageError
from planrunner.outcome import Status
from planrunner.plan import Plan
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

    def narrow(self, entries: Sequence[Entry]) -> list[Entry]:
        """The entries this saved plan lets apply send (the others are left out)."""
        keep = self.to_send
        return [e for e in entries if e.key in keep]


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
    head: dict[str, Any] = {
        "kind": KIND,
        "formatVersion": FORMAT_VERSION,
        "plan": plan.path,
        "sha256": plan_sha256,
        "now": now,
        "target": target,
        "selection": selection.as_json(),
        "maxTriggers": max_triggers,
    }
    lines = [
        json.dumps(
            {
                "key": e.key,
                "flow": e.flow,
                "flowId": e.flow_id,
                "triggerTime": e.trigger_time,
                "time": e.local_time,
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
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"{path}: not a complete saved plan ({type(e).__name__}: {e})") from None

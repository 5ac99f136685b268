"""``planrunner doctor``: check a gateway's assumptions without changing anything.

Each check prints one line, ``ok``, ``warning`` or ``problem``, with what it found. Nothing
here triggers or cancels: only the token service, Get Time Zone, Get Current Time, Get
Flow Instance (for an id that cannot exist), Search Flow Instances and Get Flow are called.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planrunner import protocol
from planrunner.commands import options
from planrunner.errors import EXIT_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:
    from planrunner.plan import Plan

DESCRIPTION = (
    "Check a gateway without changing anything: token, signature, API version, server time "
    "zone and clock skew, how a missing instance is answered, Search, and for a plan each "
    "flow (found, not locked, the user not locked, with a task; owners shown)."
)
EPILOG = options.exit_codes(
    (0, "every assumption holds (warnings allowed)"),
    (1, "a check found a problem"),
    (2, "bad usage"),
    example="planrunner doctor plans/backfill.yaml --format json",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """doctor's own options."""
    p.add_argument("plan", metavar="PLAN", nargs="?", help="plan file (YAML) whose target to check")
    p.add_argument("--gateway", metavar="URL", help="gateway (default: the plan's target.gateway)")
    p.add_argument("--org", metavar="ORG_ID", help="orgId to use without a plan")
    p.add_argument("--user", metavar="USER_ID", help="userId to use without a plan")
    p.add_argument("--api", choices=("v2.0", "v2.1"), help="API version (default: the plan's target.api, else v2.0)")
    options.add_proxy(p)
    options.add_format(p, "json")


@dataclass(frozen=True, slots=True)
class DoctorRequest:
    """What ``doctor`` was asked: a plan, or a gateway, org and user without one."""

    plan_path: str | None
    gateway: str | None = None
    org_id: str | None = None
    user_id: str | None = None
    api: str | None = None
    fmt: str = "text"


def main(args: argparse.Namespace) -> int:
    """Run from parsed options."""
    return run(
        DoctorRequest(
            plan_path=args.plan,
            gateway=args.gateway,
            org_id=args.org,
            user_id=args.user,
            api=args.api,
            fmt=args.format,
        )
    )


def target_plan(req: DoctorRequest) -> Plan:
    """The plan to check (``--api`` over its target.api), or, without one, a plan of no
    flows made of ``--gateway``, ``--org``, ``--user`` and ``--api``."""
    from planrunner import plan as planlib

    if req.plan_path is not None:
        from planrunner.checking import read_plan

        plan = read_plan(req.plan_path)
    else:
        missing = [
            name
            for name, value in (("--gateway", req.gateway), ("--org", req.org_id), ("--user", req.user_id))
            if not value
        ]
        if missing:
            raise UsageError(f"doctor needs a PLAN, or {', '.join(missing)}")
        assert req.gateway and req.org_id and req.user_id
        target = planlib.Target(req.gateway, req.org_id, req.user_id)
        plan = planlib.Plan("", target, (), {})
    if req.api is None:
        return plan
    return dataclasses.replace(plan, target=dataclasses.replace(plan.target, api=req.api))


def run(req: DoctorRequest) -> int:
    """``planrunner doctor``; exit 0 when every check is ok or a warning."""
    from planrunner.report.doctor import RENDERERS
    from planrunner.runs import connect
    from planrunner.runs.doctor import diagnose

    plan = target_plan(req)
    other_api = protocol.V21 if protocol.api(plan.target.api) is protocol.V20 else protocol.V20
    other = dataclasses.replace(plan, target=dataclasses.replace(plan.target, api=other_api.name))
    conn = connect(plan, req.gateway)
    findings = diagnose(
        conn.client,
        connect(other, req.gateway).client,
        [(f.name, f.flow_id) for f in plan.flows],
        plan.target.server_timezone,
        conn.where,
    )
    sys.stdout.write(RENDERERS[req.fmt](findings))
    return EXIT_OK if findings.ok else EXIT_FAILED

"""``planrunner doctor``: check a gateway's assumptions without changing anything.

Each check prints one line, ``ok``, ``warning`` or ``problem``, with what it found. Nothing
here triggers or cancels: only the token service, Get Time Zone, Get Current Time, Get
Flow Instance (for an id that cannot exist), Search Flow Instances and Get Flow are called.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

from planrunner import enos, protocol
from planrunner.commands import options
from planrunner.errors import EXIT_FAILED, EXIT_OK, PlanrunnerError, UsageError

DESCRIPTION = (
    "Check a gateway without changing anything: token, signature, API version, server time "
    "zone and clock skew, how a missing instance is answered, Search, and for a plan the "
    "user/org pair and each flow."
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
    p.add_argument("--api", choices=("v2.0", "v2.1"), help="API version to use without a plan")
    options.add_proxy(p)
    options.add_format(p, "json")


def main(args: argparse.Namespace) -> int:
    """Run from parsed options."""
    return run(
        args.plan,
        gateway=args.gateway,
        org_id=args.org,
        user_id=args.user,
        api=args.api,
        fmt=args.format,
    )


OK, WARNING, PROBLEM = "ok", "warning", "problem"
SKEW_WARNING_MS = 5_000  # a clock this far from the server's is worth a warning
IMPOSSIBLE_FLOW_ID = 0  # flow ids start at 1: an instance of flow 0 cannot exist
ZONE_SHOWN = 64  # characters of a zone name or owner from the service shown


def _has_dst(name: str) -> bool:
    try:
        return protocol.zone_has_dst(name)
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Check:
    """One finding."""

    name: str
    result: str
    detail: str


def _target(
    plan_path: str | None,
    gateway: str | None,
    org_id: str | None,
    user_id: str | None,
    api: str | None,
) -> tuple[str, str | None, str, str, str, str | None, list[tuple[str, int]]]:
    """(gateway, gateway as written when it holds ${VAR}, org, user, api, server zone,
    [(flow name, flowId)]) from a plan and options."""
    flows: list[tuple[str, int]] = []
    zone = None
    written = None
    if plan_path is not None:
        from planrunner.checking import read_plan

        plan = read_plan(plan_path)
        t = plan.target
        raw = plan.raw_target.get("gateway")
        written = raw if gateway is None and isinstance(raw, str) else None
        gateway = gateway or t.gateway
        org_id, user_id, api, zone = t.org_id, t.user_id, api or t.api, t.server_timezone
        flows = [(f.name, f.flow_id) for f in plan.flows]
    missing = [n for n, v in (("--gateway", gateway), ("--org", org_id), ("--user", user_id)) if not v]
    if missing:
        raise UsageError(f"doctor needs a PLAN, or {', '.join(missing)}")
    assert gateway and org_id and user_id
    return gateway, written, org_id, user_id, api or protocol.DEFAULT_API.name, zone, flows


def checks(
    client: enos.Client, other: enos.Client, flows: list[tuple[str, int]], zone_given: str | None
) -> list[Check]:
    """Every check, in order; ``other`` is the same client on the other API version. A
    check that fails in a way every later one would repeat ends the list."""
    out: list[Check] = []
    if not _token(client, out):
        return out
    tz = _api_version(client, other, out)
    if tz is None:
        return out
    out.append(_server_zone(client, tz, zone_given))
    out += _service(client)
    out += _flows(client, flows)
    return out


def _token(client: enos.Client, out: list[Check]) -> bool:
    """Token get and refresh; False when no token comes."""
    try:
        client.token()
        out.append(Check("token get", OK, "an access token was issued"))
        client.token(force=True)
        out.append(Check("token refresh", OK, "the token was refreshed (or issued again)"))
    except PlanrunnerError as e:
        out.append(Check("token", PROBLEM, str(e)))
        return False
    return True


def _api_version(client: enos.Client, other: enos.Client, out: list[Check]) -> enos.Answer | None:
    """A signed call on both API versions; the Get Time Zone answer, or None to stop."""
    tz = client.get_time_zone()
    if tz.kind is enos.Kind.AUTH:
        out.append(Check("signed call", PROBLEM, f"signature refused: {tz.msg}"))
        return None
    alt = other.get_time_zone()
    if tz.kind is not enos.Kind.OK and alt.kind is enos.Kind.OK:
        # The other version answers: every later check would fail for that reason alone.
        out.append(Check("signed call", OK, f"accepted on {other.api.name}"))
        out.append(
            Check(
                "api version",
                PROBLEM,
                f"the service speaks {other.api.name}, not {client.api.name} ({client.api.name} "
                f"answered {tz.msg or tz.code}); set target.api: {other.api.name} in the plan "
                f"(or --api {other.api.name}), then run doctor again",
            )
        )
        return None
    out.append(Check("signed call", OK if tz.kind is enos.Kind.OK else PROBLEM, tz.msg or "accepted"))
    versions = [
        f"{c.api.name} {'answers' if a.kind is enos.Kind.OK else 'does not answer'}"
        for c, a in ((client, tz), (other, alt))
    ]
    out.append(
        Check(
            "api version",
            OK if tz.kind is enos.Kind.OK else PROBLEM,
            f"using {client.api.name} ({client.api.prefix}); " + ", ".join(versions),
        )
    )
    if tz.kind is not enos.Kind.OK:
        return None  # neither version answers a signed call: the rest would only repeat it
    return tz


def _server_zone(client: enos.Client, tz: enos.Answer, zone_given: str | None) -> Check:
    """The server's zone: known, as the plan says, and without daylight saving time."""
    raw_name = tz.data.get("timezone") if isinstance(tz.data, dict) else None
    if isinstance(raw_name, str):
        name = client.clean(raw_name, ZONE_SHOWN)
        try:
            protocol.server_zone(raw_name)
            detail = f"server zone {name}"
            result = OK
            if zone_given and zone_given.replace(" ", "").upper() != raw_name.replace(" ", "").upper():
                result = WARNING
                detail += f", but the plan says serverTimezone {zone_given}"
            dst = [z for z in dict.fromkeys((zone_given or raw_name, raw_name)) if _has_dst(z)]
            if dst:
                result = WARNING
                detail += (
                    f"; {dst[0]} has daylight saving time: its repeated hour's times name two "
                    "instants (planrunner matches either), and the service's own handling of that "
                    "hour is not documented; prefer a fixed offset (GMT+N) if the service allows"
                )
            return Check("server time zone", result, detail)
        except ValueError:
            return Check(
                "server time zone",
                PROBLEM,
                f'unknown time zone "{name}" (want GMT+N or an IANA name); set target.serverTimezone',
            )
    return Check("server time zone", PROBLEM, "Get Time Zone gave no zone; set target.serverTimezone")


def _service(client: enos.Client) -> list[Check]:
    """Clock skew, the answer to a missing instance, and Search's acceptance of our body."""
    out: list[Check] = []
    now = client.get_current_time()
    if now.kind is enos.Kind.OK and isinstance(now.data, int) and not isinstance(now.data, bool):
        skew = now.data - time.time_ns() // 1_000_000
        result = OK if abs(skew) < SKEW_WARNING_MS else WARNING
        out.append(Check("clock skew", result, f"server clock {skew:+d} ms from this machine"))
    else:
        out.append(Check("clock skew", WARNING, f"Get Current Time: {now.msg or now.code}"))
    missing = client.get_instance(protocol.instance_id(IMPOSSIBLE_FLOW_ID, 0))
    if missing.kind is enos.Kind.OK and missing.data is None:
        form = "code 0 with data null"
    elif missing.kind is enos.Kind.OK and missing.data == {}:
        form = "code 0 with empty data"
    elif missing.kind is enos.Kind.OK:
        form = "code 0 with an instance (unexpected)"
    else:
        form = f"code {missing.code} ({missing.msg})"
    out.append(
        Check(
            "missing instance",
            WARNING if missing.kind is enos.Kind.OK and missing.data not in (None, {}) else OK,
            f"Get Flow Instance of an id that cannot exist answers {form}; lookups fall through to Search",
        )
    )
    minute = time.time_ns() // 1_000_000 // protocol.MINUTE_MS * protocol.MINUTE_MS
    search = client.search_instances(minute, minute + protocol.MINUTE_MS)
    if search.kind is enos.Kind.OK and isinstance(search.data, dict):
        out.append(Check("search", OK, "Search Flow Instances accepts planrunner's search body"))
    else:
        out.append(Check("search", PROBLEM, f"Search Flow Instances refused: {search.msg or search.code}"))
    return out


def _flows(client: enos.Client, flows: list[tuple[str, int]]) -> list[Check]:
    """Each flow: owned by the plan's user, not locked, with a task."""
    out: list[Check] = []
    for name, flow_id in flows:
        got = client.get_flow(flow_id)
        if got.kind is not enos.Kind.OK or not isinstance(got.data, dict):
            out.append(Check(f"flow {name}", PROBLEM, f"Get Flow {flow_id}: {got.msg or got.code}"))
            continue
        data = got.data
        notes = []
        result = OK
        owner = data.get("owner")
        if owner not in (None, "", client.user_id):
            notes.append(f"owned by {client.clean(str(owner), ZONE_SHOWN)}, not {client.user_id}")
            result = PROBLEM
        if data.get("locked") or data.get("isUserLocked"):
            notes.append("locked")
            result = PROBLEM
        if data.get("hasTask") is False:
            notes.append("has no task")
            result = PROBLEM
        out.append(Check(f"flow {name}", result, f"flowId {flow_id}: " + ("; ".join(notes) or "ok")))
    return out


def run(
    plan_path: str | None,
    *,
    gateway: str | None,
    org_id: str | None,
    user_id: str | None,
    api: str | None,
    fmt: str,
) -> int:
    """``planrunner doctor``; exit 0 when every check is ok or a warning."""
    url, written, org, user, api_name, zone, flows = _target(plan_path, gateway, org_id, user_id, api)
    version = protocol.api(api_name)
    other = protocol.V21 if version is protocol.V20 else protocol.V20
    creds = enos.Credentials.from_env()
    url = enos.check_gateway(url)
    shown = protocol.shown_gateway(written, url)
    client = enos.Client(url, org, user, creds, api=version, lookup_tries=2, shown=shown)
    other_client = enos.Client(url, org, user, creds, api=other, lookup_tries=1, shown=shown)
    found = checks(client, other_client, flows, zone)
    ok = all(c.result != PROBLEM for c in found)
    if fmt == "json":
        doc = {
            "formatVersion": 1,
            "gateway": client.where,
            "api": version.name,
            "ok": ok,
            "checks": [asdict(c) for c in found],
        }
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        sys.stdout.write(f"doctor {client.where} ({version.name}, org {org}, user {user})\n")
        width = max(len(c.name) for c in found) if found else 0
        for c in found:
            sys.stdout.write(f"  {c.result:<8} {c.name:<{width}}  {c.detail}\n")
        sys.stdout.write("every assumption holds\n" if ok else "some assumptions do not hold\n")
    return EXIT_OK if ok else EXIT_FAILED

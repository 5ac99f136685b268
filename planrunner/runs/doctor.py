"""What ``doctor`` checks (contract section 3, Doctor): a gateway's assumptions, read-only.

Only the token service, Get Time Zone, Get Current Time, Get Flow Instance (for an id that
cannot exist), Search Flow Instances and Get Flow are called: nothing is triggered or
cancelled. Each check is one :class:`Check`, ``ok``, ``warning`` or ``problem``; the
command renders them (report/doctor.py) and exits 1 when any is a problem.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from planrunner import enos, protocol
from planrunner.errors import PlanrunnerError

OK, WARNING, PROBLEM = "ok", "warning", "problem"
SKEW_WARNING_MS = 5_000  # a clock this far from the server's is worth a warning
IMPOSSIBLE_FLOW_ID = 0  # flow ids start at 1: an instance of flow 0 cannot exist
SHOWN = 64  # characters shown of a zone name, flow name or owner from the service
OWNERS_SHOWN = 5  # owners listed by name; more are counted
# Get Flow answers that say the flow is not there for this user (not that the call failed).
NOT_THERE = (enos.Kind.OK, enos.Kind.PERMANENT, enos.Kind.DUPLICATE)


@dataclass(frozen=True, slots=True)
class Check:
    """One finding."""

    name: str
    result: str
    detail: str


@dataclass(frozen=True, slots=True)
class Findings:
    """Every check of one doctor run, and where it looked."""

    where: str  # the gateway as output names it (never a ${VAR} expanded)
    api: str
    org_id: str
    user_id: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """No check found a problem (warnings allowed)."""
        return all(c.result != PROBLEM for c in self.checks)


def diagnose(
    client: enos.Client,
    other: enos.Client,
    flows: Sequence[tuple[str, int]],
    zone_given: str | None,
    where: str,
) -> Findings:
    """Every check, in order; ``other`` is the same client on the other API version and
    ``flows`` the plan's (name, flowId) pairs. A check that fails in a way every later one
    would repeat ends the list."""
    found: list[Check] = []
    if _token(client, found):
        tz = _api_version(client, other, found)
        if tz is not None:
            found.append(_server_zone(client, tz, zone_given))
            found += _service(client)
            found += [flow_check(client, name, flow_id) for name, flow_id in flows]
    return Findings(where, client.api.name, client.org_id, client.user_id, tuple(found))


def _has_dst(name: str) -> bool:
    try:
        return protocol.zone_has_dst(name)
    except ValueError:
        return False


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
    if not isinstance(raw_name, str):
        return Check("server time zone", PROBLEM, "Get Time Zone gave no zone; set target.serverTimezone")
    name = client.clean(raw_name, SHOWN)
    try:
        protocol.server_zone(raw_name)
    except ValueError:
        return Check(
            "server time zone",
            PROBLEM,
            f'unknown time zone "{name}" (want GMT+N or an IANA name); set target.serverTimezone',
        )
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


def _service(client: enos.Client) -> list[Check]:
    """Clock skew, the answer to a missing instance, the user/org pair, and Search's
    acceptance of our body."""
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
    elif missing.kind is enos.Kind.OK and missing.data in ({}, []):
        form = "code 0 with empty data"
    elif missing.kind is enos.Kind.OK:
        form = "code 0 with an instance (unexpected)"
    else:
        form = f"code {missing.code} ({missing.msg})"
    out.append(
        Check(
            "missing instance",
            WARNING if missing.kind is enos.Kind.OK and missing.data not in (None, {}, []) else OK,
            f"Get Flow Instance of an id that cannot exist answers {form}; lookups fall through to Search",
        )
    )
    minute = time.time_ns() // 1_000_000 // protocol.MINUTE_MS * protocol.MINUTE_MS
    search = client.search_instances(minute, minute + protocol.MINUTE_MS)
    pair = f"userId {client.user_id} with orgId {client.org_id}"
    if search.code == protocol.USER_ORG_MISMATCH:
        # Every call carries the pair: Search's refusal of it says nothing of the body.
        detail = f"{pair} refused (62101: the user does not exist or is not in the org); set target.userId and target.orgId"
        out.append(Check("user and org", PROBLEM, detail))
    elif search.kind is enos.Kind.OK and isinstance(search.data, dict):
        out.append(Check("user and org", OK, f"{pair} accepted"))
        out.append(Check("search", OK, "Search Flow Instances accepts planrunner's search body"))
    else:
        out.append(Check("search", PROBLEM, f"Search Flow Instances refused: {search.msg or search.code}"))
    return out


def flow_check(client: enos.Client, name: str, flow_id: int) -> Check:
    """One flow by Get Flow: found and visible, neither it nor the user locked, with a task
    in its ``graph``. Owners (usernames, never compared with the userId) and a paused
    schedule (``active: 0``) are information."""
    label = f"flow {name}"
    got = client.get_flow(flow_id)
    if got.kind not in NOT_THERE:
        # The call failed (a timeout, a 5xx, auth): nothing is known about the flow.
        return Check(label, PROBLEM, f"flowId {flow_id}: Get Flow failed: {got.msg or got.code}")
    info = protocol.read_flow(got.data) if got.kind is enos.Kind.OK else None
    about = _about(client, info)
    refusal = protocol.flow_refusal(info)
    if refusal is not None:
        answered = "" if got.kind is enos.Kind.OK else f" (Get Flow answered {got.code}: {got.msg})"
        detail = f"flowId {flow_id}: {refusal}{answered}" + (f"; {about}" if about else "")
        return Check(label, PROBLEM, detail)
    return Check(label, OK, f"flowId {flow_id}: {about}")


def _about(client: enos.Client, info: protocol.FlowInfo | None) -> str:
    """What Get Flow says of a flow, as information: name, tasks, owners, schedule."""
    if info is None:
        return ""
    parts = [f'named "{client.clean(info.name, SHOWN)}"'] if info.name else []
    parts.append(f"{len(info.tasks)} task{'' if len(info.tasks) == 1 else 's'}")
    owners = [client.clean(o, SHOWN) for o in info.owners[:OWNERS_SHOWN]]
    more = len(info.owners) - len(owners)
    if owners:
        parts.append("owners " + ", ".join(owners) + (f" and {more} more" if more else ""))
    if info.active == 0:
        parts.append("paused (active 0): its own schedule does not run")
    return "; ".join(parts)

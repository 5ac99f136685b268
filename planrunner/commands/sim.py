"""``planrunner sim``: its options and what it does.

``add_arguments`` fills the sub-command's parser; ``run`` prints the base URL as the first
line on stdout, then serves until interrupted (exit 0). Bad options raise
:class:`~planrunner.errors.UsageError` (exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys

from planrunner import protocol
from planrunner.commands import options
from planrunner.errors import UsageError
from planrunner.sim.faults import (
    AUTH_FAILURE_FORMS,
    DEFAULT_BACKEND_DELAY,
    DEFAULT_DUPLICATE_WINDOW,
    DUPLICATE_RULES,
    GATEWAY_STATUSES,
    ID_ZONES,
    INSTANCE_DATA_FORMS,
    LOG_KEEPS,
    LOOKUP_FAULTS,
    NOT_FOUND_FORMS,
    PAGE_ORIGINS,
    PARAMETER_FORMS,
    SEARCH_COUNTS,
    TRIGGER_FAULTS,
    Dialect,
    Faults,
)
from planrunner.sim.flows import epoch_ms
from planrunner.sim.gateway import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, DEFAULT_TOKEN_TTL
from planrunner.sim.quota import Quota

DESCRIPTION = (
    "Serve a simulator of the EnOS API gateway and Data Flow batch service on loopback, "
    "speaking the service as the vendor documents it, with a switch for every undocumented "
    "point (dialects) and fault injection. Prints its base URL as the first line on stdout, "
    "then serves until interrupted."
)
EPILOG = options.exit_codes(
    (0, "stopped by Ctrl-C"),
    (2, "bad usage: a non-loopback host, a bad flows file, a bad fault, --quota or --crowd"),
    example="planrunner sim --port 0 --flows plans/sim-flows.yaml --api v2.1 --server-zone UTC",
)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
_DEFAULT = Dialect()


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``planrunner sim``'s options to its parser."""
    _add_serving(p)
    _add_timing(p)
    _add_dialect(p)


def _add_serving(p: argparse.ArgumentParser) -> None:
    """Where it listens, which flows and keys it knows, how fast it lets callers go."""
    p.add_argument(
        "--host", default=DEFAULT_HOST, help="loopback address to bind (default 127.0.0.1)"
    )
    p.add_argument(
        "--port", type=options.port, default=DEFAULT_PORT, help="port (default 8080; 0 picks a free one)"
    )
    p.add_argument(
        "--flows",
        metavar="FILE",
        help="YAML list of {flowId, name, owner, users, orgId, locked, isUserLocked, tasks, "
        "active, type, cycle, freq, runSeconds, fails, timeouts, badParameter}; see "
        "plans/sim-flows.yaml. A flow not listed is refused as the vendor does",
    )
    p.add_argument(
        "--accept-unknown-flows",
        action="store_true",
        help="accept triggers of flows the fixture does not list, for any user (not the vendor's "
        "behaviour: it answers 62102)",
    )
    p.add_argument(
        "--access-key", help="app key to accept (default $ENOS_ACCESS_KEY, else sim-access-key)"
    )
    p.add_argument(
        "--secret-key", help="app secret to accept (default $ENOS_SECRET_KEY, else sim-secret-key)"
    )
    p.add_argument(
        "--rate-limit",
        type=options.positive_float,
        default=None,
        metavar="PER_SECOND",
        help="answer HTTP 429 above this many requests per second",
    )
    p.add_argument(
        "--quota",
        action="append",
        default=[],
        metavar="N/WINDOW",
        help="the gateway's quota: N signed calls per second, minute, hour or day (windows "
        "aligned to the epoch), then HTTP 429 until the window ends; repeatable",
    )
    p.add_argument(
        "--crowd",
        action="append",
        default=[],
        metavar="FLOWID:MINUTE:COUNT",
        help="pre-create COUNT instances of other flows in that UTC minute (ISO 8601 with an "
        "offset, or epoch ms), so a Search of it spans pages; repeatable",
    )


def _add_timing(p: argparse.ArgumentParser) -> None:
    """How slow and unreliable it is: latency, processing, faults, token lifetime."""
    p.add_argument(
        "--latency",
        type=options.non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="delay every trigger answer by this long",
    )
    p.add_argument(
        "--processing",
        type=options.non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="the service works this long on every trigger and creates the instance when done, "
        "even if the client has gone (set it above the client's read timeout for a slow service)",
    )
    p.add_argument(
        "--backend-delay",
        type=options.non_negative_float,
        default=DEFAULT_BACKEND_DELAY,
        metavar="SECONDS",
        help="how long after a 504-then-create or drop-then-create answer the backend creates "
        f"the instance (default {DEFAULT_BACKEND_DELAY:g})",
    )
    kinds = ", ".join((*TRIGGER_FAULTS, *LOOKUP_FAULTS))
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE|KIND@N,M",
        help=f"inject a fault: KIND=RATE (a probability per request, seeded) or KIND@N,M (the Nth "
        f"and Mth triggers; lookups for lookup-*). KIND: {kinds} (5NN: any status 500-599, e.g. "
        f"524-after-create), http-NNN (a gateway status: "
        f"{', '.join(str(s) for s in GATEWAY_STATUSES)}). Repeatable.",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed for faults and instance outcomes, so runs repeat (default 0)",
    )
    p.add_argument(
        "--token-ttl",
        type=options.positive_int,
        default=DEFAULT_TOKEN_TTL,
        metavar="SECONDS",
        help="lifetime of issued tokens (default 7200)",
    )


def _add_dialect(p: argparse.ArgumentParser) -> None:
    """Readings of what the vendor does not document."""
    d = p.add_argument_group("dialect (readings of what the vendor does not document)")
    _add_wire_dialect(d)
    _add_service_dialect(d)


def _add_wire_dialect(d: argparse._ArgumentGroup) -> None:
    """API version, zones, the missing-instance form and the duplicate rule."""
    d.add_argument(
        "--api",
        choices=tuple(protocol.APIS),
        default=_DEFAULT.api,
        help="API version (default v2.0)",
    )
    d.add_argument(
        "--server-zone",
        default=_DEFAULT.server_zone,
        metavar="ZONE",
        help="the zone Get Time Zone names and time strings use: GMT+8 (default), UTC, GMT-5, GMT+5:30, ...",
    )
    d.add_argument(
        "--id-zone",
        choices=ID_ZONES,
        default=_DEFAULT.id_zone,
        help="zone of instance id digits (default utc)",
    )
    d.add_argument(
        "--not-found",
        choices=NOT_FOUND_FORMS,
        default=_DEFAULT.not_found,
        help="Get of a missing instance: 62102, or code 0 with data null or {} (default 62102)",
    )
    d.add_argument(
        "--duplicate",
        choices=DUPLICATE_RULES,
        default=_DEFAULT.duplicate,
        help="refuse a second trigger of a flow per trigger minute, per wall-clock window, or never "
        "(default minute-key)",
    )
    d.add_argument(
        "--duplicate-window",
        type=options.non_negative_float,
        default=DEFAULT_DUPLICATE_WINDOW,
        metavar="SECONDS",
        help="the wall-clock window of --duplicate wall-clock (default 60)",
    )


def _add_service_dialect(d: argparse._ArgumentGroup) -> None:
    """Auth failures, paging, Retry-After, DST time strings and hostile strings."""
    d.add_argument(
        "--auth-failure",
        choices=AUTH_FAILURE_FORMS,
        default=_DEFAULT.auth_failure,
        help="auth failures as HTTP 401, or as HTTP 200 with a legacy body (default http)",
    )
    d.add_argument(
        "--page-origin",
        type=int,
        choices=PAGE_ORIGINS,
        default=None,
        help="Search's first pageNo (default: 0 for v2.0, 1 for v2.1)",
    )
    d.add_argument(
        "--search-count",
        choices=SEARCH_COUNTS,
        default=_DEFAULT.search_count,
        help="Search count: the total, or the page length (default total)",
    )
    d.add_argument(
        "--retry-after",
        action="store_true",
        help="send Retry-After with 429 and 503 (not documented; off by default)",
    )
    d.add_argument(
        "--server-zone-dst",
        default=None,
        metavar="ZONE",
        help="write time strings in this daylight-saving IANA zone (America/New_York, "
        "Europe/Berlin) while Get Time Zone says its current GMT+N, as the vendor would",
    )
    d.add_argument(
        "--parameters",
        choices=PARAMETER_FORMS,
        default=_DEFAULT.parameters,
        help="the form of Update And Trigger's parameters the service accepts: a list of "
        "{key, value} (default), a map, or a JSON string of the list; others get 62102",
    )
    d.add_argument(
        "--instance-data",
        choices=INSTANCE_DATA_FORMS,
        default=_DEFAULT.instance_data,
        help="Get Flow Instance's data: the object (default) or a one-element list",
    )
    d.add_argument(
        "--log-keep",
        choices=LOG_KEEPS,
        default=_DEFAULT.log_keep,
        help="which end of a task log maxLength keeps (default start)",
    )
    d.add_argument(
        "--hostile",
        action="store_true",
        default=None,
        help="put terminal escapes, ::error:: lines, CR/LF, the token, the secret and 100 KB "
        "into every string the service returns (ids, statuses, names, messages, time zone)",
    )


def dialect_from(args: argparse.Namespace) -> Dialect:
    """The dialect the options ask for (defaults for options a parser did not define)."""
    given = {
        name: getattr(args, name)
        for name in Dialect.__dataclass_fields__
        if getattr(args, name, None) is not None
    }
    try:
        return Dialect(**given)
    except ValueError as e:
        message = str(e)
        for name in sorted(Dialect.__dataclass_fields__, key=len, reverse=True):
            message = message.replace(f"dialect {name}", "--" + name.replace("_", "-"))
        raise UsageError(message) from None


def crowd_from(specs: list[str]) -> list[tuple[int, int, int]]:
    """``--crowd FLOWID:MINUTE:COUNT`` items as (flowId, minute start in epoch ms, count)."""
    crowds = []
    for spec in specs:
        flow, _, rest = spec.partition(":")
        minute, _, count = rest.rpartition(":")
        try:
            flow_id, number = int(flow), int(count)
            start = epoch_ms(int(minute) if minute.isdigit() else minute)
            if flow_id < 1 or number < 1:
                raise ValueError
        except ValueError:
            raise UsageError(
                f"--crowd: bad {spec!r} (want FLOWID:MINUTE:COUNT, MINUTE an ISO 8601 time "
                "with an offset or epoch ms, FLOWID and COUNT >= 1)"
            ) from None
        crowds.append((flow_id, start - start % protocol.MINUTE_MS, number))
    return crowds


def quotas_from(specs: list[str]) -> list[Quota]:
    """``--quota N/WINDOW`` items."""
    try:
        return [Quota.parse(spec) for spec in specs]
    except ValueError as e:
        raise UsageError(f"--quota: {e}") from None


def run(args: argparse.Namespace) -> int:
    """``planrunner sim``: print the base URL first, then serve until interrupted."""
    from planrunner.sim import Simulator, load_flows

    if not protocol.is_loopback(args.host):
        raise UsageError(
            f'--host: the simulator binds to loopback addresses only, not "{args.host}" '
            "(use 127.0.0.1, ::1 or localhost)"
        )
    flows = load_flows(args.flows) if args.flows else []
    try:
        faults = Faults.parse(
            args.fault,
            latency=args.latency,
            seed=args.seed,
            processing=args.processing,
            backend_delay=args.backend_delay,
        )
    except ValueError as e:
        raise UsageError(f"--fault: {e}") from None
    dialect = dialect_from(args)
    access = args.access_key or os.environ.get("ENOS_ACCESS_KEY") or DEFAULT_ACCESS_KEY
    secret = args.secret_key or os.environ.get("ENOS_SECRET_KEY") or DEFAULT_SECRET_KEY
    try:
        sim = Simulator(
            flows,
            host=args.host,
            port=args.port,
            access_key=access,
            secret_key=secret,
            faults=faults,
            rate_limit=args.rate_limit,
            token_ttl=args.token_ttl,
            dialect=dialect,
            accept_unknown_flows=args.accept_unknown_flows,
            quotas=quotas_from(args.quota),
            crowd=crowd_from(args.crowd),
        )
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    print(sim.url, flush=True)
    print(
        f"simulating {len(flows)} listed flows "
        f"({'others accepted for any user' if args.accept_unknown_flows else 'others refused'}), "
        f"API {dialect.api}, "
        f"server zone {dialect.server_zone_dst or dialect.server_zone}"
        f"{'; hostile strings' if dialect.hostile else ''}; Ctrl-C stops",
        file=sys.stderr,
    )
    try:
        sim.serve()
    except KeyboardInterrupt:
        pass
    finally:
        sim.close()
    return 0

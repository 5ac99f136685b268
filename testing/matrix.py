"""The dialect matrix: one exactly-once trial per simulator dialect, as tests and a report.

``python -m testing.matrix [--full] [--trials N]`` prints, per cell, the applies needed,
the instances created twice and the entries left not done (both must be 0). The wire cells
(:data:`WIRE_CELLS`) run the same trial under the newer switches: the form of Update And
Trigger's ``parameters`` (the list apply sends is accepted; a ``map`` or ``string`` service
refuses it, and then nothing may be created and the flow not hammered), Get Flow Instance's
``data`` as a list, a daylight-saving zone behind ``GMT+N``, and both page origins. A second table
covers the slow, unforgiving service of the reliability probe (:data:`SLOW_CELLS`: a
gateway that gave up while the backend creates, any 5xx after creating, daylight-saving
server zones, hostile strings, a flow answered 62102 "Incorrect parameter"), every one of
them without a duplicate rule (``duplicate: none``), so any second send is a second
instance.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from planrunner import enos, plan, protocol
from planrunner.cli import main as planrunner_main
from planrunner.sim import Dialect, Faults, SimFlow, Simulator
from testing import FAST_ENV, SIM_ENV, duplicates_and_resends, write_plan

SECRET = SIM_ENV["ENOS_SECRET_KEY"]

APIS = ("v2.0", "v2.1")
ZONES = ("GMT+8", "UTC", "GMT-5")
ID_ZONES = ("utc", "server")
NOT_FOUND = ("62102", "null", "empty")
DUPLICATE = ("minute-key", "wall-clock", "none")
ALL_CELLS: list[tuple[str, ...]] = list(itertools.product(APIS, ZONES, ID_ZONES, NOT_FOUND, DUPLICATE))
FAULTS = [
    "62109=0.05",
    "62109-after-create=0.05",
    "503=0.05",
    "504-after-create=0.08",
    "drop-after-create=0.05",
    "malformed=0.04",
    "lookup-503=0.1",
]
MAX_APPLIES = 4
MAX_REFUSED_APPLIES = 2  # applies of a plan whose every send the service refuses
MAX_REFUSED_SENDS = 2  # per apply, for a flow every trigger of which is "Incorrect parameter"
FLOWS, PER_FLOW = 3, 8
WINDOW = 0.2  # the wall-clock dialect's window, seconds (apply's matching wait: FAST_ENV)


def sample() -> list[tuple[str, ...]]:
    """Every (api, duplicate) pair, with the other switches rotated so each value appears."""
    cells: list[tuple[str, ...]] = []
    for i, (api, dup) in enumerate(itertools.product(APIS, DUPLICATE)):
        cells.append((api, ZONES[i % 3], ID_ZONES[i % 2], NOT_FOUND[(i + 1) % 3], dup))
        cells.append((api, ZONES[(i + 1) % 3], ID_ZONES[(i + 1) % 2], NOT_FOUND[i % 3], dup))
    return cells


def hourly_flows(first_id: int) -> str:
    """Hourly entries: with server-local id digits, the instance 8 h (or 5 h) away exists too."""
    return "".join(
        f'  - {{name: f{first_id + i}, flowId: {first_id + i}, cron: "0 * * * *", '
        f"from: 2026-01-01, count: {PER_FLOW}}}\n"
        for i in range(FLOWS)
    )


def parameter_flows(first_id: int) -> str:
    """:func:`hourly_flows` with parameters, which apply sends with Update And Trigger."""
    return hourly_flows(first_id).replace("}\n", ', parameters: {day: "{date}", mode: full}}\n')


# Whether this tree sends a flow's parameters (the plan language reads them and the client
# has Update And Trigger): the parameters cells need both, and join the matrix when they are.
SENDS_PARAMETERS = "parameters" in {f.name for f in dataclasses.fields(plan.Flow)} and hasattr(
    enos.Client, "update_and_trigger"
)


@dataclass(frozen=True)
class Wire:
    """A wire cell: a dialect of the newer switches, and what the trial must show."""

    name: str
    dialect: Dialect
    parameters: bool = False  # the plan's flows carry parameters
    refused: bool = False  # the service refuses what apply sends: nothing may be created


WIRE_CELLS: list[Wire] = [
    Wire("parameters/list", Dialect(parameters="list"), parameters=True),
    Wire("parameters/map", Dialect(parameters="map"), parameters=True, refused=True),
    Wire("parameters/string", Dialect(parameters="string"), parameters=True, refused=True),
    Wire("instance-data/list/v2.0", Dialect(instance_data="list")),
    Wire("instance-data/list/v2.1", Dialect(api="v2.1", instance_data="list")),
    Wire("server-zone-dst/Europe/Berlin", Dialect(server_zone_dst="Europe/Berlin")),
    Wire("server-zone-dst/America/New_York", Dialect(server_zone_dst="America/New_York")),
    Wire("page-origin/0/v2.1", Dialect(api="v2.1", page_origin=0)),
    Wire("page-origin/1/v2.0", Dialect(page_origin=1)),
]


def runnable_wire_cells() -> list[Wire]:
    """The wire cells this tree can run (the parameters cells need :data:`SENDS_PARAMETERS`)."""
    return [c for c in WIRE_CELLS if SENDS_PARAMETERS or not c.parameters]


def run_wire(cell: Wire, workdir: Path, seed: int) -> Trial:
    """Apply a plan in ``cell``'s dialect (with every fault, unless the service refuses the
    plan's sends) until done, or 4 applies (2 for a refused cell)."""
    flows = [SimFlow(100 + i, run_seconds=0.01) for i in range(FLOWS)]
    faults = Faults.parse([] if cell.refused else FAULTS, seed=seed)
    codes: list[int] = []
    with Simulator(flows, faults=faults, dialect=cell.dialect) as sim:
        text = parameter_flows(100) if cell.parameters else hourly_flows(100)
        path = write_plan(workdir, text, api=cell.dialect.api)
        out = ""
        for _ in range(MAX_REFUSED_APPLIES if cell.refused else MAX_APPLIES):
            code, out, _err = _apply(
                ["apply", str(path), "--gateway", sim.url, "--yes", "--format", "json"]
            )
            codes.append(code)
            if code == 0:
                break
        expected = {(e["flowId"], e["triggerTime"]) for e in json.loads(out)["entries"]}
        log = sim.triggers()
    created = {(t["flowId"], t["triggerTime"]) for t in log if t["flowInstanceId"]}
    faulted = [t for t in log if t["status"] not in (0, protocol.BAD_PARAMETER_OR_DUPLICATE)]
    dupes, resends = duplicates_and_resends(log)
    trial = Trial(cell.name, codes, expected, created, dupes, len(resends), len(faulted))
    trial.refused_sends = sum(1 for t in log if t["status"] == protocol.BAD_PARAMETER_OR_DUPLICATE)
    trial.parameter_sends = sum(1 for t in log if t.get("parameters"))
    return trial


def wire_problems(cell: Wire, trial: Trial) -> list[str]:
    """What went wrong in a wire cell (empty when it held)."""
    problems = []
    if not trial.expected:
        problems.append(f"no entries: applies exited {trial.applies}")
    if cell.parameters and trial.parameter_sends == 0 and not cell.refused:
        problems.append("flows with parameters were sent without them (plain Trigger Flow)")
    if cell.refused:
        if trial.created:
            problems.append(f"{len(trial.created)} instances created by a refused form")
        allowed = MAX_REFUSED_SENDS * FLOWS * len(trial.applies)
        if trial.refused_sends > allowed:
            problems.append(f"{trial.refused_sends} refused sends (at most {allowed})")
        return problems
    if trial.applies[-1] != 0:
        problems.append(f"not done after {len(trial.applies)} applies: exits {trial.applies}")
    if trial.not_done:
        problems.append(f"{trial.not_done} entries never created")
    if trial.duplicates or trial.resends:
        problems.append(f"{len(trial.duplicates)} duplicated, {trial.resends} resent")
    return problems


def dialect(cell: tuple[str, ...]) -> Dialect:
    """The simulator dialect of a matrix cell."""
    api, zone, id_zone, not_found, duplicate = cell
    return Dialect(
        api=api,
        server_zone=zone,
        id_zone=id_zone,
        not_found=not_found,
        duplicate=duplicate,
        duplicate_window=WINDOW,
    )


@dataclass
class Trial:
    """One trial's outcome."""

    cell: str
    applies: list[int]  # exit codes, in order
    expected: set[tuple[int, int]]
    created: set[tuple[int, int]]
    duplicates: list[tuple[int, int]]
    resends: int
    faulted: int
    leaks: list[str] = field(default_factory=list)  # outputs holding a secret or an injection
    refused_sends: int = 0  # trigger requests for a flow the service refuses (62102)
    extra_instances: int = 0  # instances beyond the first, over every key
    stuck: int = 0  # entries the last apply left not done (failed, unknown, pending)
    parameter_sends: int = 0  # sends that carried parameters (Update And Trigger)

    @property
    def not_done(self) -> int:
        """Entries without an instance at the end."""
        return len(self.expected - self.created)


def _apply(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = planrunner_main(argv)
    return code, out.getvalue(), err.getvalue()


FAILING = 1_767_232_800_000  # 2026-01-01T02:00Z: the third hourly entry's instance ends FAIL
RERUN_AT = FAILING + 60_000  # its rerun round: the next minute, free (issue 22)


def run_cell(cell: tuple[str, ...], workdir: Path, seed: int) -> Trial:
    """Apply a plan in ``cell``'s dialect with every fault at once until done (or 4 applies);
    then, each flow's instance at :data:`FAILING` having ended FAIL, apply with
    ``--rerun-failed 1`` until done: one rerun round per flow, at :data:`RERUN_AT`."""
    flows = [SimFlow(100 + i, run_seconds=0.01, fails=[FAILING]) for i in range(FLOWS)]
    faults = Faults.parse(FAULTS, seed=seed)
    codes: list[int] = []
    with Simulator(flows, faults=faults, dialect=dialect(cell)) as sim:
        plan = write_plan(workdir, hourly_flows(100), api=cell[0])
        out = ""
        for rerun in ([], ["--rerun-failed", "1"]):
            if rerun:
                time.sleep(0.5)  # the instances end (FAILING's as FAIL)
            for _ in range(MAX_APPLIES):
                code, out, _err = _apply(
                    ["apply", str(plan), "--gateway", sim.url, "--yes", "--format", "json", *rerun]
                )
                codes.append(code)
                if code == 0:
                    break
            if code != 0:
                break
        expected = {(e["flowId"], e["triggerTime"]) for e in json.loads(out)["entries"]}
        expected |= {(f.flow_id, RERUN_AT) for f in flows}
        log = sim.triggers()
    created = {(t["flowId"], t["triggerTime"]) for t in log if t["flowInstanceId"]}
    faulted = [t for t in log if t["status"] not in (0, protocol.BAD_PARAMETER_OR_DUPLICATE)]
    dupes, resends = duplicates_and_resends(log)
    return Trial("/".join(cell), codes, expected, created, dupes, len(resends), len(faulted))


# -- the slow, unforgiving service -----------------------------------------------------------

BACKEND_DELAY = 1.0  # seconds from a -then-create answer to the instance
# An unknown outcome may still act this long (the backend's delay plus a margin): what the
# in-flight wait must cover here. FAST_ENV's 0.5 s would be shorter than the backend.
SLOW_ENV = {"PLANRUNNER_IN_FLIGHT_SECONDS": "2"}
SETTLE_SECONDS = 30.0  # how long a cell waits for the backend's late creates
REFUSED_FLOW = 600
HOSTILE_MARKS = ("\x1b", "INJECTED")
DONE = ("triggered", "reconciled", "skipped")  # an apply entry's statuses that mean done
SMALL = "".join(
    f'  - {{name: s{700 + i}, flowId: {700 + i}, cron: "0 * * * *", from: 2026-01-01, count: 2}}\n'
    for i in range(2)
)  # 2 flows x 2 entries


def _dst_flows(first: str) -> str:
    """One flow at both occurrences of a repeated hour (``first`` is the first, in UTC)."""
    return (
        f'  - {{name: dst, flowId: 500, at: ["{first}", "{first[:11]}'
        f'{int(first[11:13]) + 1:02d}{first[13:]}", "2026-06-01T12:00:00Z"]}}\n'
    )


@dataclass(frozen=True)
class Slow:
    """A cell of the slow, unforgiving service: a dialect, faults and the plan they need."""

    name: str
    finding: str
    dialect: Dialect
    faults: tuple[str, ...]
    flows: str = SMALL
    server_zone: str | None = None  # the plan's target.serverTimezone
    sim_flows: tuple[SimFlow, ...] = ()
    max_applies: int = MAX_APPLIES
    env: tuple[tuple[str, str], ...] = tuple(SLOW_ENV.items())


NONE = Dialect(duplicate="none")
SLOW_CELLS: list[Slow] = [
    Slow("504-then-create", "N1", NONE, ("504-then-create@1,3",)),
    Slow("drop-then-create", "N1", NONE, ("drop-then-create@1,3",)),
    *[
        Slow(f"{code}-after-create", "N5", NONE, (f"{code}-after-create@1,3",))
        for code in (520, 524, 501, 599)
    ],
    Slow(
        "dst/America/New_York",
        "N4",
        Dialect(server_zone="America/New_York", duplicate="none"),
        ("504-after-create=1.0",),
        _dst_flows("2026-11-01T05:30:00Z"),
    ),
    Slow(
        "dst/Europe/Berlin",
        "N4",
        Dialect(server_zone="Europe/Berlin", duplicate="none"),
        ("504-after-create=1.0",),
        _dst_flows("2026-10-25T00:30:00Z"),
    ),
    Slow(
        "dst-gmt/America/New_York",
        "N4",
        Dialect(server_zone_dst="America/New_York", duplicate="none"),
        ("504-after-create=1.0",),
        _dst_flows("2026-11-01T05:30:00Z"),
        server_zone="America/New_York",
    ),
    Slow(
        "hostile",
        "N6",
        Dialect(hostile=True, duplicate="none"),
        ("504-after-create@1,3",),
        server_zone="GMT+8",
    ),
    Slow(
        "62102-incorrect-parameter",
        "N17",
        NONE,
        (),
        SMALL
        + f'  - {{name: bad, flowId: {REFUSED_FLOW}, cron: "0 * * * *", from: 2026-01-01, count: 3}}\n',
        sim_flows=(SimFlow(REFUSED_FLOW, bad_parameter=True, run_seconds=0.01),),
        max_applies=2,
    ),
]


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def leaks(texts: dict[str, str], tokens: list[str]) -> list[str]:
    """The names of ``texts`` that hold the secret, a token, an escape, an injected marker, a
    line-initial workflow command or a line over 10,000 characters."""
    found = []
    for name, text in texts.items():
        secret = any(t and t in text for t in (SECRET, *tokens))
        injected = any(m in text for m in HOSTILE_MARKS) or re.search(r"(?m)^::", text)
        huge = any(len(line) > 10_000 for line in text.splitlines())
        if secret or injected or huge:
            found.append(name)
    return found


def run_slow(cell: Slow, workdir: Path, seed: int) -> Trial:
    """Apply ``cell``'s plan against its service until done (or its applies run out)."""
    flows = [SimFlow(700 + i, run_seconds=0.01) for i in range(2)] + list(cell.sim_flows)
    flows.append(SimFlow(500, run_seconds=0.01))
    faults = Faults.parse(list(cell.faults), seed=seed, backend_delay=BACKEND_DELAY)
    codes: list[int] = []
    outputs: dict[str, str] = {}
    with _environ({**SIM_ENV, **FAST_ENV, **dict(cell.env)}), Simulator(
        flows, faults=faults, dialect=cell.dialect
    ) as sim:
        plan = write_plan(workdir, cell.flows, server_zone=cell.server_zone)
        ledger_path = workdir / "slow.ledger.jsonl"
        out = ""
        for n in range(cell.max_applies):
            code, out, err = _apply(
                ["apply", str(plan), "--gateway", sim.url, "--yes", "--format", "json",
                 "--ledger", str(ledger_path)]
            )  # fmt: skip
            codes.append(code)
            outputs[f"apply {n + 1} stdout"], outputs[f"apply {n + 1} stderr"] = out, err
            if code == 0:
                break
        sim.state.settle(SETTLE_SECONDS)
        log = sim.triggers()
        tokens = list(sim.state.gateway.tokens)
    if ledger_path.exists():
        outputs["ledger"] = ledger_path.read_text(errors="replace")
    try:
        entries = json.loads(out)["entries"]
    except (ValueError, KeyError, TypeError):
        entries = []
    expected = {(e["flowId"], e["triggerTime"]) for e in entries if e["flowId"] != REFUSED_FLOW}
    mine = [t for t in log if t["flowId"] != REFUSED_FLOW]
    created = {(t["flowId"], t["triggerTime"]) for t in mine if t["flowInstanceId"]}
    faulted = [t for t in log if t["status"] != 0]
    dupes, resends = duplicates_and_resends(mine)
    refused = sum(1 for t in log if t["flowId"] == REFUSED_FLOW)
    per_key = Counter((t["flowId"], t["triggerTime"]) for t in mine if t["flowInstanceId"])
    stuck = [e for e in entries if e["flowId"] != REFUSED_FLOW and e["status"] not in DONE]
    return Trial(
        f"{cell.finding} {cell.name}",
        codes,
        expected,
        created,
        dupes,
        len(resends),
        len(faulted),
        leaks(outputs, tokens),
        refused,
        sum(n - 1 for n in per_key.values()),
        len(stuck),
    )


def slow_problems(cell: Slow, trial: Trial) -> list[str]:
    """What went wrong in a slow-service cell (empty when exactly once held)."""
    problems = []
    if not trial.expected:
        problems.append(f"no entries: applies exited {trial.applies}")
    if cell.sim_flows:
        allowed = MAX_REFUSED_SENDS * len(trial.applies)
        if trial.refused_sends > allowed:
            problems.append(
                f"{trial.refused_sends} sends for the refused flow over {len(trial.applies)} "
                f"applies (at most {allowed})"
            )
    elif trial.applies[-1] != 0:
        problems.append(f"not done after {len(trial.applies)} applies: exits {trial.applies}")
    if trial.not_done:
        problems.append(f"{trial.not_done} entries never created (lost)")
    if trial.stuck:
        problems.append(f"{trial.stuck} entries left not done (stuck)")
    if trial.duplicates:
        problems.append(
            f"{len(trial.duplicates)} keys created more than once ({trial.extra_instances} extra "
            f"instances): {sorted(trial.duplicates)[:3]}"
        )
    if trial.resends:
        problems.append(f"{trial.resends} sends over an existing instance")
    if trial.leaks:
        problems.append(f"secret or injection in: {', '.join(trial.leaks)}")
    return problems


def _print_wire() -> int:
    """Run and print the wire cells; the number of problems."""
    bad = 0
    print(f"{'wire cell':<34} applies dup resent not-done faults refused")
    for i, cell in enumerate(WIRE_CELLS):
        if cell not in runnable_wire_cells():
            print(f"{cell.name:<34} not run: this tree does not send parameters yet")
            continue
        with tempfile.TemporaryDirectory() as d:
            trial = run_wire(cell, Path(d), 20_000 + i)
        problems = wire_problems(cell, trial)
        bad += len(problems)
        print(
            f"{cell.name:<34} {len(trial.applies):>7} {len(trial.duplicates):>3} "
            f"{trial.resends:>6} {trial.not_done:>8} {trial.faulted:>6} {trial.refused_sends:>7}"
            + (f"  FAIL: {'; '.join(problems)}" if problems else "")
        )
    print(f"wire cells {len(WIRE_CELLS)}, problems {bad}")
    return bad


def main(argv: list[str] | None = None) -> int:
    """Print the matrix report; exit 1 if any cell duplicated or left an entry not done."""
    import os

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="all 108 cells (default: the CI sample)")
    parser.add_argument("--trials", type=int, default=1, help="trials per cell, seeds 0..N-1")
    args = parser.parse_args(argv)
    os.environ.update({**SIM_ENV, **FAST_ENV})
    cells = ALL_CELLS if args.full else sample()
    bad = 0
    print(f"{'cell':<42} trials applies dup resent not-done faults")
    for cell in cells:
        trials = []
        for t in range(args.trials):
            with tempfile.TemporaryDirectory() as d:
                trials.append(run_cell(cell, Path(d), ALL_CELLS.index(cell) * 100 + t))
        dup = sum(len(t.duplicates) for t in trials)
        resent = sum(t.resends for t in trials)
        left = sum(t.not_done for t in trials)
        applies = max(len(t.applies) for t in trials)
        faults = sum(t.faulted for t in trials)
        bad += dup + resent + left
        print(f"{'/'.join(cell):<42} {len(trials):>6} {applies:>7} {dup:>3} {resent:>6} {left:>8} {faults:>6}")
    print(f"cells {len(cells)}, trials {len(cells) * args.trials}, problems {bad}")
    print()
    bad += _print_wire()
    print()
    print(f"{'slow-service cell':<32} applies dup extra resent lost stuck faults refused leaks")
    for i, slow in enumerate(SLOW_CELLS):
        with tempfile.TemporaryDirectory() as d:
            trial = run_slow(slow, Path(d), 10_000 + i)
        problems = slow_problems(slow, trial)
        bad += len(problems)
        print(
            f"{trial.cell:<32} {len(trial.applies):>7} {len(trial.duplicates):>3} "
            f"{trial.extra_instances:>5} {trial.resends:>6} {trial.not_done:>4} {trial.stuck:>5} "
            f"{trial.faulted:>6} {trial.refused_sends:>7} {len(trial.leaks):>5}"
            + (f"  FAIL: {'; '.join(problems)}" if problems else "")
        )
    print(f"slow-service cells {len(SLOW_CELLS)}, problems {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

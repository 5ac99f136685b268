"""Exactly once under every reading of what the vendor leaves undocumented.

Each cell of the matrix is one simulator dialect: API version x server zone x the zone of
instance-id digits x how Get answers a missing instance x how a second trigger within a
minute is refused. In each cell, apply runs with every fault at once until done, and the
simulator's trigger log must show every entry created exactly once and nothing sent for
an entry whose instance already existed. ``duplicate: none`` is the strictest cell: the
service refuses nothing, so any second send is a second instance.

CI runs a covering sample (every value of every switch, every pair of API and duplicate
rule); ``PLANRUNNER_MATRIX=full`` runs all 108 cells.

The slow, unforgiving service (testing.matrix.SLOW_CELLS, reliability probe N1, N4, N5,
N6, N17) runs every cell with ``duplicate: none``: a gateway that answers 504 (or hangs up)
while its backend creates the instance a second later, any 5xx after creating, a
daylight-saving server zone with entries in the repeated hour, hostile strings in every
field, and a flow answered 62102 "Incorrect parameter" on every trigger.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from planrunner import enos, protocol
from planrunner.errors import ServiceError
from planrunner.sim import Dialect, Faults, Simulator
from testing import duplicates_and_resends, make_client, write_plan
from testing.matrix import (
    ALL_CELLS,
    APIS,
    DUPLICATE,
    FLOWS,
    ID_ZONES,
    MAX_APPLIES,
    NOT_FOUND,
    PER_FLOW,
    SLOW_CELLS,
    ZONES,
    Slow,
    hourly_flows,
    run_cell,
    run_slow,
    sample,
    slow_problems,
)

CELLS = ALL_CELLS if os.environ.get("PLANRUNNER_MATRIX") == "full" else sample()


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS, ids="/".join)
def test_exactly_once_in_every_dialect(tmp_path: Path, sim_env: None, cell: tuple[str, ...]) -> None:
    trial = run_cell(cell, tmp_path, ALL_CELLS.index(cell))
    assert trial.applies[-1] == 0, f"{trial.cell}: not done after {MAX_APPLIES} applies: {trial.applies}"
    assert trial.faulted, f"{trial.cell}: no fault fired: the cell proves nothing"
    assert trial.created == trial.expected, f"{trial.cell}: missing {sorted(trial.expected - trial.created)[:3]}"
    assert not trial.duplicates, f"{trial.cell}: created more than once: {trial.duplicates[:3]}"
    assert not trial.resends, f"{trial.cell}: sent again over an existing instance"


@pytest.mark.parametrize("zone", ["GMT+8", "GMT-5", "GMT+5:30"])
def test_the_8_hour_hazard_a_lookup_never_takes_another_hours_instance(zone: str) -> None:
    """Ids in server-local digits: Get by the UTC-derived id returns the instance of another
    hour; its flowId matches and only the trigger time, read in the server's zone, tells."""
    t0 = 1_767_225_600_000  # 2026-01-01T00:00Z
    offset_ms = int(protocol.server_zone(zone).utcoffset(None).total_seconds() * 1000)  # type: ignore[union-attr]
    with Simulator(dialect=Dialect(server_zone=zone, id_zone="server"), accept_unknown_flows=True) as sim:
        c = make_client(sim.url)
        # The instance whose server-local id digits equal the UTC digits of t0.
        other = t0 - offset_ms
        assert c.trigger(7, other).kind is enos.Kind.OK
        assert protocol.instance_id(7, other, protocol.server_zone(zone)) == protocol.instance_id(7, t0)
        look = c.find_instance(7, t0)
        assert look.found is False, look
        assert c.find_instance(7, other).found is True


@pytest.mark.parametrize("not_found", NOT_FOUND)
@pytest.mark.parametrize("api", APIS)
def test_every_not_found_form_falls_through_to_search(api: str, not_found: str) -> None:
    t0 = 1_767_225_600_000
    with Simulator(dialect=Dialect(api=api, not_found=not_found), accept_unknown_flows=True) as sim:
        c = make_client(sim.url, api=protocol.api(api))
        assert c.find_instance(8, t0) == enos.Lookup(False, None)
        assert c.trigger(8, t0 + 12_000).kind is enos.Kind.OK
        # Found to the second: the string time keeps the seconds; a time 1 s off is not it.
        assert c.find_instance(8, t0 + 12_000).found is True
        assert c.find_instance(8, t0 + 13_000).found is False


def test_a_string_trigger_time_is_read_in_the_server_zone_never_as_utc() -> None:
    t0 = 1_767_225_600_000
    with Simulator(dialect=Dialect(server_zone="GMT+8"), accept_unknown_flows=True) as sim:
        c = make_client(sim.url)
        assert c.trigger(9, t0).kind is enos.Kind.OK
        got = c.get_instance(protocol.instance_id(9, t0))
        assert got.data["triggerTime"] == "2026-01-01 08:00:00"
        assert c.find_instance(9, t0).found is True
        # A client told the wrong zone finds it only by Search, whose window fixed the minute
        # by epoch ms (section 11: only the seconds are read there); never another second's.
        wrong = make_client(sim.url, server_zone=protocol.server_zone("UTC"))
        assert wrong.find_instance(9, t0).found is True
        assert wrong.find_instance(9, t0 + 1_000).found is False
        assert wrong.find_instance(9, t0 + 60_000).found is False


def test_62109_on_trigger_is_looked_up_before_anything_is_sent_again(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    faults = Faults.parse(["62109-after-create@1,3,5"])
    with Simulator(faults=faults, dialect=Dialect(duplicate="none"), accept_unknown_flows=True) as sim:
        plan = write_plan(tmp_path, hourly_flows(300))
        r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--format", "json")
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        assert doc["summary"].get("reconciled") == 3, doc["summary"]
        dupes, resends = duplicates_and_resends(sim.triggers())
        assert not dupes and not resends


def test_auth_failure_in_a_200_body_is_an_auth_failure() -> None:
    with Simulator(dialect=Dialect(auth_failure="body"), accept_unknown_flows=True) as sim:
        c = make_client(sim.url)
        assert c.trigger(1, 1_767_225_600_000).kind is enos.Kind.OK
        sim.state.revoke_tokens()
        # The body says the token is refused: the client refreshes once and succeeds.
        assert c.trigger(1, 1_767_225_660_000).kind is enos.Kind.OK
        token_calls = len(sim.state.token_log)
        bad = make_client(sim.url)
        bad.token()
        bad._creds = enos.Credentials("sim-access-key", "wrong")  # signatures now fail
        # 497 in a 200 body: an auth failure, so one token refresh (refused: wrong secret).
        with pytest.raises(ServiceError, match="access token"):
            bad.trigger(1, 1_767_225_720_000)
        assert len(sim.state.token_log) > token_calls + 1


def test_62102_not_found_waits_out_the_minute_rule_and_sends_once_more(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    """wall-clock: a second trigger of a flow within the window is refused whatever its time."""
    with Simulator(dialect=Dialect(duplicate="wall-clock", duplicate_window=0.2), accept_unknown_flows=True) as sim:
        plan = write_plan(tmp_path, hourly_flows(400))
        r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--format", "json")
        assert r.code == 0, r.err
        log = sim.triggers()
        refused = [t for t in log if t["status"] == protocol.BAD_PARAMETER_OR_DUPLICATE]
        assert refused, "the wall-clock rule never refused: the test proves nothing"
        dupes, resends = duplicates_and_resends(log)
        assert not dupes and not resends
        assert json.loads(r.out)["summary"] == {"triggered": FLOWS * PER_FLOW}


def test_sampled_cells_cover_every_value() -> None:
    for i, values in enumerate((APIS, ZONES, ID_ZONES, NOT_FOUND, DUPLICATE)):
        assert {c[i] for c in sample()} == set(values)
    assert len(ALL_CELLS) == 108


def _cells(finding: str) -> pytest.MarkDecorator:
    cells = [c for c in SLOW_CELLS if c.finding == finding]
    return pytest.mark.parametrize("cell", cells, ids=lambda c: c.name)


def _exactly_once_in_slow_cell(cell: Slow, tmp_path: Path) -> None:
    trial = run_slow(cell, tmp_path, 10_000 + SLOW_CELLS.index(cell))
    assert trial.faulted, f"{trial.cell}: no fault fired: the cell proves nothing"
    assert not slow_problems(cell, trial), f"{trial.cell}: {slow_problems(cell, trial)}"


@pytest.mark.slow
@_cells("N1")
def test_n1_gateway_gave_up_while_the_backend_creates_exactly_once(
    tmp_path: Path, cell: Slow
) -> None:
    _exactly_once_in_slow_cell(cell, tmp_path)


@pytest.mark.slow
@_cells("N5")
def test_n5_any_5xx_after_create_is_looked_up_exactly_once(tmp_path: Path, cell: Slow) -> None:
    _exactly_once_in_slow_cell(cell, tmp_path)


@pytest.mark.slow
@_cells("N4")
def test_n4_dst_repeated_hour_is_found_exactly_once(tmp_path: Path, cell: Slow) -> None:
    _exactly_once_in_slow_cell(cell, tmp_path)


@pytest.mark.slow
@_cells("N6")
def test_n6_hostile_strings_never_reach_output_or_ledger(tmp_path: Path, cell: Slow) -> None:
    _exactly_once_in_slow_cell(cell, tmp_path)


@pytest.mark.slow
@_cells("N17")
def test_n17_incorrect_parameter_flow_is_refused_not_retried_per_entry(
    tmp_path: Path, cell: Slow
) -> None:
    _exactly_once_in_slow_cell(cell, tmp_path)


def test_slow_cells_have_no_duplicate_rule_and_cover_the_probe() -> None:
    assert all(c.dialect.duplicate == "none" for c in SLOW_CELLS)
    assert {c.finding for c in SLOW_CELLS} == {"N1", "N4", "N5", "N6", "N17"}

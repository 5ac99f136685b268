"""Issue 20-22: the dialect matrix's wire cells (testing.matrix.WIRE_CELLS) hold exactly once.

Each cell applies a plan against the real simulator in one of the newer switches: the form
of Update And Trigger's parameters, Get Flow Instance's data as a list, a daylight-saving
zone behind GMT+N, both page origins. The parameters cells join when this tree sends a
flow's parameters (testing.matrix.SENDS_PARAMETERS).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testing.matrix import WIRE_CELLS, Wire, run_wire, runnable_wire_cells, wire_problems


@pytest.mark.slow
@pytest.mark.parametrize("cell", runnable_wire_cells(), ids=lambda c: c.name)
def test_i20_22_wire_cell_holds_exactly_once(tmp_path: Path, sim_env: None, cell: Wire) -> None:
    trial = run_wire(cell, tmp_path, 20_000 + WIRE_CELLS.index(cell))
    assert cell.refused or trial.faulted, f"{cell.name}: no fault fired: the cell proves nothing"
    assert not wire_problems(cell, trial), f"{cell.name}: {wire_problems(cell, trial)}"


def test_i20_22_wire_cells_cover_every_new_switch() -> None:
    dialects = [c.dialect for c in WIRE_CELLS]
    assert {d.parameters for d in dialects} == {"list", "map", "string"}
    assert {d.instance_data for d in dialects} == {"object", "list"}
    assert {d.page_origin for d in dialects} >= {0, 1}
    assert any(d.server_zone_dst for d in dialects)
    assert [c.refused for c in WIRE_CELLS if c.parameters] == [False, True, True]

"""Status and cancel at scale (issue 20, contract section 12): lookups in batches, about
one request per hundred instances, and a progress line while looking up (finding 15)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from planrunner import lookup
from planrunner.sim import Dialect, SimFlow, Simulator
from planrunner.terminal import Lookups
from testing import cron_flows, run_in_pty, write_plan

APIS = ("v2.0", "v2.1")


def looked_up(err: str) -> list[dict[str, object]]:
    """The "looked up" log lines (JSON) of a run: entries, requests, seconds."""
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("event") == "looked up"]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("api", APIS)
def test_i20_status_looks_up_in_batches_about_one_request_per_100_instances(
    tmp_path: Path, run, sim_env, api
) -> None:
    flows, per_flow = 3, 400  # 400 entries 5 minutes apart: two windows of a day per flow
    with Simulator(dialect=Dialect(api=api), accept_unknown_flows=True) as s:
        plan = write_plan(tmp_path, cron_flows(flows, per_flow), gateway=s.url, api=api)
        assert run("apply", str(plan), "--yes", "--quiet").code == 0
        r = run("status", str(plan), "--format", "json", "--log-format", "json", "-v", "--logs", "0")
    doc = json.loads(r.out)
    assert sum(doc["summary"].values()) == flows * per_flow
    assert not set(doc["summary"]) & {lookup.NOT_FOUND, lookup.LOOKUP_FAILED}, doc["summary"]
    (stats,) = looked_up(r.err)
    assert stats["entries"] == flows * per_flow
    # One Search page per hundred instances of a flow's window, plus at most two per window
    # (a last page; v2.1's other page origin): not one request per entry (1,200).
    requests = stats["requests"]
    assert isinstance(requests, int)
    assert requests <= flows * per_flow // 100 + 2 * (flows * 2), requests


def test_i20_cancel_looks_up_in_batches(tmp_path: Path, run, sim_env) -> None:
    flows, per_flow = 2, 150
    with Simulator([SimFlow(1, run_seconds=600), SimFlow(2, run_seconds=600)]) as s:
        plan = write_plan(tmp_path, cron_flows(flows, per_flow), gateway=s.url)
        assert run("apply", str(plan), "--yes", "--quiet").code == 0
        r = run("cancel", str(plan), "--yes", "--log-format", "json", "-v")
    assert r.code == 0, r.err
    assert f"Cancel: {flows * per_flow} instances ({flows * per_flow} cancelled)." in r.out
    (stats,) = looked_up(r.err)
    assert stats["entries"] == flows * per_flow
    requests = stats["requests"]
    assert isinstance(requests, int)
    assert requests <= flows * per_flow // 100 + 2 * flows, requests


def test_f15_lookup_progress_line_counts_by_state_and_is_wiped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    stream = Tty()
    progress = Lookups(stream, enabled=True)
    progress.start(1000)
    progress.add(["SUCCESS"] * 300 + ["WAIT"] * 100)
    progress.stop()
    text = stream.getvalue()
    assert text.startswith("\rlooking up [")
    assert "400/1000" in text and "SUCCESS 300" in text and "WAIT 100" in text
    assert text.endswith("\r\x1b[K")  # wiped: the report follows on a clean line
    silent = io.StringIO()
    quiet = Lookups(silent, enabled=False)
    quiet.start(10)
    quiet.add(["SUCCESS"])
    quiet.stop()
    assert silent.getvalue() == ""


def test_f15_status_shows_progress_while_looking_up_on_a_terminal_only(
    tmp_path: Path, run, sim_env
) -> None:
    with Simulator(accept_unknown_flows=True) as s:
        plan = write_plan(tmp_path, cron_flows(2, 50), gateway=s.url)
        assert run("apply", str(plan), "--yes", "--quiet").code == 0
        code, out, screen = run_in_pty(["status", str(plan), "--logs", "0"])
        off = run("status", str(plan), "--logs", "0")
    assert code in (0, 4), screen  # 4: instances still running
    assert re.search(r"looking up \[[#-]+\] 50/100 ", screen), screen
    assert "Status: 100 entries" in out
    assert "looking up [" not in off.err  # not a terminal: log lines only


def test_i20_batches_are_per_flow_windows_of_less_than_a_day(tmp_path: Path) -> None:
    from planrunner import checking
    from planrunner.runs.watch import batches

    day = 86_400_000
    _plan, entries = checking.load_entries(
        str(write_plan(tmp_path, cron_flows(2, 700, step="*/3"))), 1_800_000_000_000, 100_000
    )  # 700 entries 3 minutes apart: 35 hours a flow
    got = batches([(e, None) for e in reversed(entries)])
    assert sorted(e.key for b in got for e, _ in b) == sorted(e.key for e in entries)
    assert [b[0][0].flow_id for b in got] == [2, 2, 1, 1]  # per flow; a flow's in time order
    for b in got:
        assert len({e.flow_id for e, _ in b}) == 1
        times = [e.trigger_time for e, _ in b]
        assert times == sorted(times)
        assert times[-1] - (times[0] - times[0] % 60_000) < day
    assert [len(b) for b in got] == [480, 220, 480, 220]  # a day of 3-minute entries, then the rest

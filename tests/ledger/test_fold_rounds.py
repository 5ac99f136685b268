"""Rerun rounds in the ledger (issue 22, DESIGN 13): the record fields, their validation, the
fold per round (the key's status is its newest round's), in any order."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planrunner import ledger
from planrunner.cli import main
from planrunner.errors import LedgerError
from planrunner.ledger import Send
from planrunner.outcome import Entry
from testing import cron_flows, write_plan

T0 = 1767225600000  # 2026-01-01T00:00Z: the first entry of cron_flows(1, ...)
ENTRY = Entry(T0, 1, "f1", "o1", 0)
KEY = ENTRY.key
GW = "https://apigw.example.com"


def at(second: int) -> str:
    return f"2026-01-02T00:00:{second:02d}.000Z"


def send(rnd: int, params: dict[str, str] | None = None) -> Send:
    """Round ``rnd`` of ENTRY, sent ``rnd`` minutes after its trigger time."""
    return Send(ENTRY, rnd, T0 + rnd * 60_000 if rnd else None, params)


def history(rnd: int, attempt: str, *outcomes: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """An attempt of round ``rnd`` as the engine writes it: its intent, then ``outcomes``."""
    ref = send(rnd, params)
    out = [ledger.intent(ref, attempt, gateway=GW, flow="f1", run="r")]
    for what in outcomes:
        if what == "triggered":
            out.append(ledger.triggered(ref, attempt, gateway=GW, flow_instance_id=f"i{rnd}"))
        elif what == "failed":
            out.append(ledger.failed(ref, attempt, gateway=GW, code=62104, msg="no task"))
        elif what == "unknown":
            out.append(ledger.unknown(ref, attempt, gateway=GW, reason="read timeout"))
        elif what == "aborted":
            out.append(ledger.aborted(ref, attempt, gateway=GW, reason="not sent"))
        elif what in ("found", "not-found"):
            found = what == "found"
            iid = f"i{rnd}" if found else None
            out.append(ledger.reconciled(ref, attempt, gateway=GW, found=found, flow_instance_id=iid))
        elif what == "cancelled":
            out.append(ledger.cancelled(ref, f"{attempt}.c", gateway=GW, flow_instance_id=f"i{rnd}"))
        else:
            raise AssertionError(what)
    return out


def fold(records: list[dict[str, Any]], keys: set[str] | None = None) -> ledger.Folded:
    return ledger.fold_into(ledger.Folded(), records, keys)


def view(f: ledger.Folded, key: str = KEY) -> tuple[object, ...]:
    """What a fold says of a key, every field that does not depend on record order."""
    s = f.state(key)
    return (
        str(f.status(key)),
        f.done.get(key),
        f.parameters.get(key),
        key in f.cancelled,
        s.round,
        s.sent_time,
        s.parameters,
        s.flow_instance_id,
        {a: (s.intents[a], s.sent_at(a), s.asked(a)) for a in s.open_attempts},
        s.failed,
    )


# -- the records -------------------------------------------------------------------------------


def test_i22_every_record_of_a_rerun_attempt_carries_round_and_sent_time() -> None:
    records = history(2, "r.1", "unknown", "found", "cancelled", params={"out": "/x"})
    assert all(r["round"] == 2 and r["sentTime"] == T0 + 120_000 for r in records)
    assert all(r["triggerTime"] == T0 and r["key"] == KEY for r in records)
    # The intent carries the parameters it sends; the record that settles the attempt repeats them.
    carried = {r["event"] for r in records if "parameters" in r}
    assert carried == {"intent", "reconciled"}
    assert all(ledger.validate(r) is None for r in records)


def test_i22_round_0_records_carry_neither_round_nor_sent_time() -> None:
    records = history(0, "r.1", "failed") + history(0, "r.2", "triggered", params={"p": "v"})
    assert not any("round" in r or "sentTime" in r for r in records)
    assert [r["event"] for r in records if "parameters" in r] == ["intent", "triggered"]
    assert ledger.Send(ENTRY).sends_at == T0 and send(3).sends_at == T0 + 180_000


def test_i22_a_send_of_a_rerun_round_needs_its_sent_time() -> None:
    with pytest.raises(ValueError, match="sent time"):
        Send(ENTRY, 1)
    with pytest.raises(ValueError, match="sent time"):
        Send(ENTRY, 0, T0)


# -- validation: wrong types are refused with their line (exit 3) --------------------------------

BAD = [
    ({"round": "1", "sentTime": T0}, '"round" must be an integer >= 1'),
    ({"round": 0, "sentTime": T0}, '"round" must be an integer >= 1'),
    ({"round": True, "sentTime": T0}, '"round" must be an integer >= 1'),
    ({"round": 1.0, "sentTime": T0}, '"round" must be an integer >= 1'),
    ({"round": 1}, '"sentTime" of a rerun record is missing'),
    ({"round": 1, "sentTime": "0"}, '"sentTime" of a rerun record is str'),
    ({"round": 1, "sentTime": None}, '"sentTime" of a rerun record is NoneType'),
    ({"sentTime": T0}, '"sentTime" without "round"'),
    ({"parameters": ["a", "b"]}, '"parameters" must be an object of strings'),
    ({"parameters": {"a": 1}}, '"parameters" must be an object of strings'),
    ({"parameters": None}, '"parameters" must be an object of strings'),
]


@pytest.mark.parametrize(("fields", "why"), BAD)
def test_i22_wrong_round_fields_are_refused_by_the_fold_with_their_line(
    tmp_path: Path, fields: dict[str, Any], why: str
) -> None:
    path = tmp_path / "l.jsonl"
    good = history(0, "r.1", "triggered")
    bad = {**ledger.intent(ENTRY, "r.2", gateway=GW, flow="f1", run="r"), **fields}
    path.write_bytes(ledger.encode([*good, bad]))
    with pytest.raises(LedgerError, match=rf"l.jsonl:3: corrupt ledger line \({why}"):
        ledger.fold(str(path), {KEY})
    assert ledger.validate(bad, full=False) is not None
    with pytest.raises(LedgerError, match=r"l.jsonl:3: corrupt ledger line"):
        list(ledger.FileLedger(str(path)).records())  # what import and export read


def test_i22_plan_over_a_ledger_with_a_wrong_round_exits_3_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    ledger_path = tmp_path / "plan.ledger.jsonl"
    bad = {**history(1, "r.2", "triggered")[1], "round": "1"}
    ledger_path.write_bytes(ledger.encode([*history(0, "r.1", "triggered"), bad]))
    code = main(["plan", str(plan)])
    err = capsys.readouterr().err
    assert code == 3
    assert f"{ledger_path}:3: corrupt ledger line" in err and '"round"' in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_i22_verify_lists_a_wrong_round_with_its_line(tmp_path: Path) -> None:
    from planrunner.ledger import tools

    path = tmp_path / "l.jsonl"
    bad = {**history(1, "r.2")[0], "sentTime": "later"}
    path.write_bytes(ledger.encode([*history(0, "r.1", "triggered"), bad]))
    checked = tools.check_lines(str(path))
    assert checked.problems == [f'{path}:3: "sentTime" of a rerun record is str, not int']


# -- the fold per round ------------------------------------------------------------------------

ROUND_CASES = [
    # (records, status, round, sent_time, flowInstanceId)
    (history(0, "a", "triggered"), "done", 0, None, "i0"),
    (history(0, "a", "triggered") + history(1, "b"), "unknown", 1, T0 + 60_000, None),
    (history(0, "a", "triggered") + history(1, "b", "unknown"), "unknown", 1, T0 + 60_000, None),
    (history(0, "a", "triggered") + history(1, "b", "failed"), "failed", 1, T0 + 60_000, None),
    (history(0, "a", "triggered") + history(1, "b", "triggered"), "done", 1, T0 + 60_000, "i1"),
    (history(0, "a", "triggered") + history(1, "b", "unknown", "found"), "done", 1, T0 + 60_000, "i1"),
    # A round whose every attempt never left (aborted) or was found not made is as if never
    # sent: the key is its round 0 again (pending rounds never exist).
    (history(0, "a", "triggered") + history(1, "b", "aborted"), "done", 0, None, "i0"),
    (history(0, "a", "triggered") + history(1, "b", "unknown", "not-found"), "done", 0, None, "i0"),
    (history(0, "a", "triggered") + history(1, "b", "failed") + history(1, "c", "triggered"), "done", 1, T0 + 60_000, "i1"),
    (history(0, "a", "triggered") + history(1, "b", "triggered") + history(2, "c"), "unknown", 2, T0 + 120_000, None),
    (history(0, "a", "triggered") + history(1, "b", "triggered") + history(2, "c", "triggered"), "done", 2, T0 + 120_000, "i2"),
    # Cancelled: the newest round's cancelled record shows the key cancelled; an older one's does not.
    (history(0, "a", "triggered") + history(1, "b", "triggered", "cancelled"), "cancelled", 1, T0 + 60_000, "i1"),
    (history(0, "a", "triggered", "cancelled") + history(1, "b", "triggered"), "done", 1, T0 + 60_000, "i1"),
    (history(0, "a", "triggered", "cancelled") + history(1, "b", "aborted"), "cancelled", 0, None, "i0"),
]


@pytest.mark.parametrize(("records", "status", "rnd", "sent", "iid"), ROUND_CASES)
def test_i22_the_key_is_its_newest_rounds_state_in_every_order(
    records: list[dict[str, Any]], status: str, rnd: int, sent: int | None, iid: str | None
) -> None:
    rng = random.Random(len(records))
    for _ in range(30):
        shuffled = records[:]
        rng.shuffle(shuffled)
        f = fold(shuffled, {KEY})
        state = f.state(KEY)
        assert (str(f.status(KEY)), state.round, state.sent_time, f.done.get(KEY)) == (status, rnd, sent, iid)
        assert str(state.status) == ("done" if status == "cancelled" else status)
        assert (KEY in f.done) is (status in ("done", "cancelled"))
        assert (KEY in f.open) is (status not in ("done", "cancelled"))
        assert state.cancelled is (status == "cancelled")


def test_i22_an_open_rerun_round_says_what_to_look_up_and_where() -> None:
    records = history(0, "a", "triggered") + history(1, "b", "failed") + history(1, "c", "unknown", params={"p": "2"})
    records[-2]["sentTime"] = records[-1]["sentTime"] = T0 + 300_000  # its retry went to a later minute
    state = fold(records).state(KEY)
    assert state.status == "unknown" and state.round == 1
    assert state.open_attempts == {"c"} and state.last_intent_at == records[-2]["at"]
    assert state.sent_at("c") == T0 + 300_000 and state.sent_at("b") == T0 + 60_000
    assert state.sent_time == T0 + 300_000  # the round's latest
    assert state.asked("c") == {"p": "2"} and state.asked("b") is None
    assert state.rounds[0].done and state.rounds[0].flow_instance_id == "i0"


def test_i22_a_done_keys_parameters_are_those_of_the_attempt_that_made_it_done() -> None:
    plain = history(0, "a", "failed", params={"v": "1"}) + history(0, "b", "triggered", params={"v": "2"})
    f = fold(plain)
    assert f.parameters == {KEY: {"v": "2"}} and f.state(KEY).parameters == {"v": "2"}
    assert KEY not in f.reruns and KEY not in f.open  # round 0 done: one dict slot (and its parameters)
    rerun = plain + history(1, "c", "triggered", params={"v": "3"})
    f = fold(rerun)
    assert f.parameters == {KEY: {"v": "3"}} and f.state(KEY).parameters == {"v": "3"}
    open_rerun = plain + history(1, "c", params={"v": "3"})
    f = fold(open_rerun)
    assert KEY not in f.parameters and f.state(KEY).parameters is None
    assert fold(history(0, "a", "triggered")).state(KEY).parameters is None


def test_i22_sent_times_of_a_flow_are_every_minute_its_reruns_may_hold() -> None:
    other = Entry(T0, 2, "f2", "o1", 0)
    records = (
        history(0, "a", "triggered")
        + history(1, "b", "failed")
        + history(1, "c", "triggered")
        + history(2, "d", "aborted")
        + [ledger.intent(Send(other, 1, T0 + 600_000), "e", gateway=GW, flow="f2", run="r")]
    )
    records[4]["sentTime"] = records[5]["sentTime"] = T0 + 240_000
    f = fold(records)
    # A done round holds its instance's minute; a round not done, every minute it tried.
    assert f.sent_times("o1", 1) == {T0 + 240_000, T0 + 120_000}
    assert f.sent_times("o1", 2) == {T0 + 600_000}
    assert f.sent_times("o2", 1) == set()


def test_i22_rounds_of_keys_outside_the_plan_fold_into_orphans() -> None:
    records = history(0, "a", "triggered") + history(1, "b", "triggered", "cancelled")
    f = ledger.fold_into(ledger.Folded(), records, set(), orphans_of={"o1/1/"})
    assert f.done == {} and f.open == {} and f.reruns == {}
    orphan = f.orphans[KEY]
    assert orphan.done and orphan.round == 1 and orphan.flow_instance_id == "i1"
    assert f.cancelled == {KEY}
    f = ledger.fold_into(ledger.Folded(), history(0, "a", "triggered", "cancelled") + history(1, "b", "triggered"), set(), orphans_of={"o1/1/"})
    assert f.cancelled == set() and f.orphans[KEY].round == 1


def test_i22_records_of_the_simulator_count_for_sim_runs_only_in_every_round() -> None:
    real = history(0, "a", "triggered")
    sim = [{**r, "gateway": ledger.SIM_GATEWAY} for r in history(1, "b", "unknown")]
    assert fold([*real, *sim]).status(KEY) == "done"
    assert ledger.fold_into(ledger.Folded(), [*real, *sim], sim=True).status(KEY) == "unknown"


# -- order independence: any records of several rounds, shuffled ----------------------------------

_EVENTS = st.sampled_from(["intent", "triggered", "failed", "unknown", "aborted", "found", "not-found", "cancelled"])


@st.composite
def round_records(draw: Any) -> list[dict[str, Any]]:
    """Records of two keys over rounds 0-3, as writers make them (an attempt's round, sent
    time, time and the instance it makes follow from its key, round and attempt), in no
    particular order."""
    out = []
    for _ in range(draw(st.integers(0, 24))):
        key_t = draw(st.sampled_from([T0, T0 + 300_000]))
        rnd = draw(st.integers(0, 3))
        n = draw(st.integers(1, 3))
        attempt = f"r{rnd}.{n}"
        params = draw(st.sampled_from([None, {"p": str(rnd)}]))
        entry = Entry(key_t, 1, "f1", "o1", 0)
        ref = Send(entry, rnd, key_t + rnd * 60_000 if rnd else None, params)
        event = draw(_EVENTS)
        iid = f"{key_t}-i{rnd}"
        if event == "intent":
            r = ledger.intent(ref, attempt, gateway=GW, flow="f1", run="r")
        elif event == "triggered":
            r = ledger.triggered(ref, attempt, gateway=GW, flow_instance_id=iid)
        elif event == "failed":
            r = ledger.failed(ref, attempt, gateway=GW, code=1, msg="m")
        elif event == "unknown":
            r = ledger.unknown(ref, attempt, gateway=GW, reason="x")
        elif event == "aborted":
            r = ledger.aborted(ref, attempt, gateway=GW, reason="x")
        elif event == "cancelled":
            r = ledger.cancelled(ref, attempt, gateway=GW, flow_instance_id=iid)
        else:
            found = event == "found"
            r = ledger.reconciled(ref, attempt, gateway=GW, found=found, flow_instance_id=iid if found else None)
        r["at"] = at(rnd * 4 + n)  # one intent per attempt: its time follows from it
        out.append(r)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(round_records(), st.randoms(use_true_random=False), st.sampled_from([None, {KEY}]))
def test_i22_the_fold_of_several_rounds_does_not_depend_on_record_order(
    records: list[dict[str, Any]], rng: random.Random, keys: set[str] | None
) -> None:
    # A round's settling records agree (exactly-once makes one instance per round, and the
    # fold keeps the first settler's fields), so parameters follow from the key and round.
    by_round: dict[tuple[str, int], dict[str, str] | None] = {}
    for r in records:
        by_round.setdefault((r["key"], r.get("round", 0)), r.get("parameters"))
    for r in records:
        r.pop("parameters", None)
        p = by_round[(r["key"], r.get("round", 0))]
        if p is not None and (r["event"] in ("intent", "triggered") or (r["event"] == "reconciled" and r["found"])):
            r["parameters"] = p
    expected = fold(records, keys)
    all_keys = {r["key"] for r in records} | {KEY}
    for _ in range(4):
        shuffled = records[:]
        rng.shuffle(shuffled)
        got = fold(shuffled, keys)
        for k in all_keys:
            assert view(got, k) == view(expected, k), k
        assert got.cancelled == expected.cancelled
        assert set(got.reruns) == set(expected.reruns)
        assert got.sent_times("o1", 1) == expected.sent_times("o1", 1)


# -- the ledger commands over rounds -------------------------------------------------------------


def rerun_ledger(tmp_path: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    """A plan (two entries of flow 1) and its ledger: the first entry done, rerun once (done,
    then cancelled), a second rerun that failed, a third that is open; the second entry
    done in round 0 with parameters."""
    plan = write_plan(tmp_path, cron_flows(1, 2))
    second = Entry(T0 + 300_000, 1, "f1", "o1", 0)
    records = (
        history(0, "a", "unknown", "found")
        + history(1, "b", "triggered", "cancelled", params={"d": "1"})
        + history(2, "c", "failed")
        + history(2, "d", "aborted")
        + history(3, "e", "unknown")
        + [
            ledger.intent(Send(second, parameters={"d": "2"}), "f", gateway=GW, flow="f1", run="r"),
            ledger.triggered(Send(second, parameters={"d": "2"}), "f", gateway=GW, flow_instance_id="s0"),
        ]
    )
    path = tmp_path / "plan.ledger.jsonl"
    path.write_bytes(ledger.encode(records))
    return plan, path, records


def test_i22_compaction_keeps_what_every_round_needs(tmp_path: Path) -> None:
    from planrunner.ledger import tools

    _plan, path, records = rerun_ledger(tmp_path)
    before = ledger.fold(str(path))
    done = tools.compact_file(str(path), "test", 0)
    after = ledger.fold(str(path))
    left = [r for _, r in ledger.FileLedger(str(path)).records()]
    kept = [(r["event"], r["attempt"], r.get("round", 0)) for r in left]
    assert kept == [
        ("reconciled", "a", 0),  # round 0: its settler
        ("triggered", "b", 1),  # round 1: its settler and its cancellation
        ("cancelled", "b.c", 1),
        ("failed", "c", 2),  # round 2 (failed): what closed its attempts
        ("aborted", "d", 2),
        ("intent", "e", 3),  # round 3 (open): its open intent
        ("triggered", "f", 0),  # the second entry: its settler, which carries the parameters
    ]
    assert (done.before, done.after) == (len(records), len(kept))
    assert tools.fold_differences(before, after) == []
    second = f"o1/1/{T0 + 300_000}"
    assert after.parameters[second] == {"d": "2"} and after.state(KEY).rounds[1].parameters == {"d": "1"}
    assert view(after) == view(before) and after.status(KEY) == "unknown" and after.state(KEY).round == 3
    assert tools.compact_records(left) == left  # compacting again changes nothing


def test_i22_verify_counts_each_key_by_its_newest_round(tmp_path: Path, run) -> None:
    plan, path, _ = rerun_ledger(tmp_path)
    r = run("ledger", "verify", str(plan), "--format", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["counts"]["real"] == {"done": 1, "unknown": 1}
    # Close the open third rerun (found not made): the key is its failed second rerun.
    ref = send(3)
    path.write_bytes(path.read_bytes() + ledger.encode([ledger.reconciled(ref, "e", gateway=GW, found=False, flow_instance_id=None)]))
    assert json.loads(run("ledger", "verify", str(plan), "--format", "json").out)["counts"]["real"] == {"done": 1, "failed": 1}


def test_i22_log_shows_the_round_of_each_attempt(tmp_path: Path, run) -> None:
    plan, _path, _ = rerun_ledger(tmp_path)
    doc = json.loads(run("ledger", "log", str(plan), "--key", KEY, "--format", "json").out)
    rounds = {(x["attempt"], x.get("round", 0), x.get("sentTime")) for x in doc["keys"][0]["records"]}
    assert ("a", 0, None) in rounds and ("b", 1, T0 + 60_000) in rounds and ("e", 3, T0 + 180_000) in rounds
    assert doc["keys"][0]["state"] == {"real": "unknown"}
    text = run("ledger", "log", str(plan), "--key", KEY).out
    line = next(x for x in text.splitlines() if " triggered " in x and " b " in x)
    assert "round 1" in line and f"sentTime {T0 + 60_000}" in line


def test_i22_export_and_import_carry_rounds_and_parameters(tmp_path: Path, run) -> None:
    _plan, path, records = rerun_ledger(tmp_path)
    out = tmp_path / "out.jsonl"
    assert run("ledger", "export", "--ledger", str(path), str(out)).code == 0
    assert [json.loads(x) for x in out.read_text().splitlines()] == records
    target = tmp_path / "copy.ledger.jsonl"
    assert run("ledger", "import", "--ledger", str(target), str(out)).code == 0
    assert run("ledger", "import", "--ledger", str(target), str(out)).code == 0  # nothing added twice
    assert [r for _, r in ledger.FileLedger(str(target)).records()] == records
    from planrunner.ledger import tools

    assert tools.fold_differences(ledger.fold(str(path)), ledger.fold(str(target))) == []

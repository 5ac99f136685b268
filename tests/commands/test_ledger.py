"""`planrunner ledger log|verify|compact`, compaction's property test, and re-running a done entry."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planrunner import ledger
from planrunner.checking import read_plan
from planrunner.ledger import tools
from testing import cron_flows, write_plan

# Hypothesis examples per property test: CI runs the default; LEDGER_EXAMPLES=2000 for more.
EXAMPLES = int(os.environ.get("LEDGER_EXAMPLES", "300"))

# -- random ledgers ----------------------------------------------------------------------------

KEYS = [("o1", 1, 1767225600000), ("o1", 1, 1767225900000), ("o1", 2, 1767225600000)]
ATTEMPTS = ["r1.1", "r1.2", "r2.1", "r2.2"]
IDS = [None, "1-20260101000000", "x-other"]


_KEY = st.sampled_from(KEYS)
_EVENT = st.sampled_from(ledger.EVENTS)
_ATTEMPT = st.sampled_from(ATTEMPTS)
_ID = st.sampled_from(IDS)
_GATEWAY = st.sampled_from(["sim", "https://gw.example.com"])
_CODE = st.sampled_from([None, 62104])
_MSG = st.sampled_from(["a", "b"])
_SECOND = st.integers(0, 59)
# Rerun rounds (issue 22): an attempt belongs to one round, so the round follows from it.
ROUND_OF = {"r1.1": 0, "r1.2": 0, "r2.1": 1, "r2.2": 2}
_PARAMS = st.sampled_from([None, {"out": "/a"}, {"out": "/b"}])


@st.composite
def records(draw: Any) -> dict[str, Any]:
    org, flow_id, t = draw(_KEY)
    event = draw(_EVENT)
    if event == "intent":
        extra: dict[str, Any] = {"flow": f"f{flow_id}", "run": "r"}
    elif event == "triggered":
        extra = {"flowInstanceId": draw(_ID)}
    elif event == "failed":
        extra = {"code": draw(_CODE), "msg": draw(_MSG)}
    elif event == "reconciled":
        extra = {"found": draw(st.booleans()), "flowInstanceId": draw(_ID)}
    elif event == "cancelled":
        extra = {"flowInstanceId": "1-20260101000000"}
    else:
        extra = {"reason": "why"}
    attempt = draw(_ATTEMPT)
    rnd = ROUND_OF[attempt]
    if rnd:
        extra |= {"round": rnd, "sentTime": t + rnd * 60_000}
    params = draw(_PARAMS)
    if params is not None and event in ("intent", "triggered", "reconciled"):
        extra["parameters"] = params
    return {
        "v": 1,
        "event": event,
        "key": f"{org}/{flow_id}/{t}",
        "flowId": flow_id,
        "orgId": org,
        "triggerTime": t,
        "attempt": attempt,
        "at": f"2026-01-01T00:00:{draw(_SECOND):02d}.000Z",
        "gateway": draw(_GATEWAY),
        **extra,
    }


_RECORD = records()


@st.composite
def merged_ledgers(draw: Any) -> list[dict[str, Any]]:
    """A ledger as git's merge=union leaves it: a shared base, both branches' lines, in any order."""
    base = draw(st.lists(_RECORD, max_size=12))
    ours = draw(st.lists(_RECORD, max_size=8))
    theirs = draw(st.lists(_RECORD, max_size=8))
    both = draw(st.lists(st.sampled_from(base), max_size=3)) if base else []  # duplicated lines
    merged = base + ours + theirs + both
    return draw(st.permutations(merged))


def view(f: ledger.Folded, key: str) -> tuple[object, ...]:
    """Everything the fold says of a key that apply, plan, status and cancel read."""
    s = f.state(key)
    return (
        f.status(key),
        f.done.get(key),
        key in f.cancelled,
        {a: (s.intents[a], s.sent_at(a), s.asked(a)) for a in s.open_attempts},
        s.last_intent_at,
        s.failed,
        s.error,
        s.round,
        s.sent_time,
        s.parameters,
        f.parameters.get(key),
        f.sent_times(key.split("/")[0], int(key.split("/")[1])),
    )


def write(path: str, recs: list[dict[str, Any]]) -> None:
    """A ledger file as apply creates it (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(ledger.encode(recs))


ALL_KEYS = [f"{o}/{f}/{t}" for o, f, t in KEYS]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for every example (files are overwritten; nothing is locked)."""
    return tmp_path_factory.mktemp("ledgers")


@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(merged_ledgers(), st.data())
def test_compaction_folds_to_the_same_states(
    scratch: Path, recs: list[dict[str, Any]], data: Any
) -> None:
    path = str(scratch / "x.ledger.jsonl")
    write(path, recs)
    before = {sim: ledger.fold(path, sim=sim) for sim in (False, True)}
    compacted = tools.compact_records(recs)
    write(path, compacted)
    after = {sim: ledger.fold(path, sim=sim) for sim in (False, True)}
    for sim in (False, True):
        for key in ALL_KEYS:
            assert view(after[sim], key) == view(before[sim], key), (sim, key)
    assert len(compacted) <= len(recs)
    # Compacting again changes nothing.
    assert tools.compact_records(compacted) == compacted
    # A later union merge may bring dropped lines back: the states stay the same.
    back = data.draw(st.lists(st.sampled_from(recs), max_size=6)) if recs else []
    write(path, data.draw(st.permutations(compacted + back)))
    for sim in (False, True):
        again = ledger.fold(path, sim=sim)
        for key in ALL_KEYS:
            assert again.status(key) == before[sim].status(key), (sim, key)


@settings(max_examples=max(EXAMPLES // 10, 20), deadline=None)
@given(merged_ledgers())
def test_compact_file_is_atomic_and_keeps_the_mode(recs: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.ledger.jsonl")
        write(path, recs)
        before = {sim: ledger.fold(path, sim=sim) for sim in (False, True)}
        done = tools.compact_file(path, "test", 0)
        assert (done.before, done.after) == (len(recs), len(tools.compact_records(recs)))
        for sim in (False, True):
            after = ledger.fold(path, sim=sim)
            assert all(view(after, k) == view(before[sim], k) for k in ALL_KEYS)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # the mode is kept
        assert set(os.listdir(d)) == {"x.ledger.jsonl", "x.ledger.jsonl.lock"}  # no temp left


def test_compaction_keeps_the_fewest_records(tmp_path: Path) -> None:
    def rec(event: str, attempt: str, **extra: Any) -> dict[str, Any]:
        t = 1767225600000
        r = ledger.record(event, f"o1/1/{t}", 1, "o1", t, attempt, gateway="https://g", **extra)
        r["at"] = "2026-01-01T00:00:00.000Z"
        return r

    history = [
        rec("intent", "a", flow="f1", run="r"),
        rec("unknown", "a", reason="timeout"),
        rec("reconciled", "a", found=False, flowInstanceId=None),
        rec("intent", "b", flow="f1", run="r"),
        rec("triggered", "b", flowInstanceId="1-x"),
        rec("cancelled", "c", flowInstanceId="1-x"),
        rec("cancelled", "d", flowInstanceId="1-x"),
    ]
    assert tools.compact_records(history) == [history[4], history[5]]
    assert tools.compact_records(history + history[:1]) == [history[4], history[5]]
    failed = [
        rec("intent", "a", flow="f1", run="r"),
        rec("failed", "a", code=62104, msg="no task"),
        rec("intent", "b", flow="f1", run="r"),
    ]
    assert tools.compact_records(failed) == failed[1:]
    closed = [
        rec("intent", "a", flow="f1", run="r"),
        rec("unknown", "a", reason="timeout"),
        rec("reconciled", "a", found=False, flowInstanceId=None),
    ]
    assert tools.compact_records(closed) == [closed[2]]


# -- the commands --------------------------------------------------------------------------------


def applied(tmp_path: Path, run, sim) -> Path:
    plan = write_plan(tmp_path, cron_flows(2, 3), gateway=sim.url)
    assert run("apply", str(plan), "--yes", "--quiet").code == 0
    return plan


def test_log_by_key_flow_and_run(tmp_path: Path, run, sim, sim_env) -> None:
    plan = applied(tmp_path, run, sim)
    path = tmp_path / "plan.ledger.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    key = recs[0]["key"]
    run_id = recs[0]["run"]
    r = run("ledger", "log", str(plan), "--format", "json")
    doc = json.loads(r.out)
    assert r.code == 0 and len(doc["keys"]) == 6
    assert [x["run"] for x in doc["runs"]] == [run_id]
    assert doc["runs"][0]["attempts"] == 6 and doc["runs"][0]["events"] == {"intent": 6, "triggered": 6}
    assert all(k["state"] == {"real": "done"} for k in doc["keys"])
    doc = json.loads(run("ledger", "log", "--ledger", str(path), "--key", key, "--format", "json").out)
    assert [k["key"] for k in doc["keys"]] == [key]
    assert [x["event"] for x in doc["keys"][0]["records"]] == ["intent", "triggered"]
    assert doc["keys"][0]["records"][0]["where"].startswith(f"{path}:")
    doc = json.loads(run("ledger", "log", str(plan), "--flow", "f2", "--format", "json").out)
    assert {k["flowId"] for k in doc["keys"]} == {2} and len(doc["keys"]) == 3
    assert json.loads(run("ledger", "log", str(plan), "--run", "nope", "--format", "json").out)["keys"] == []
    text = run("ledger", "log", str(plan), "--run", run_id).out
    assert f"{run_id}" in text and "triggered" in text and key in text
    assert run("ledger", "log").code == 2


def test_verify_locates_every_problem(tmp_path: Path, run, sim, sim_env) -> None:
    plan = applied(tmp_path, run, sim)
    path = tmp_path / "plan.ledger.jsonl"
    r = run("ledger", "verify", str(plan))
    assert r.code == 0 and "real  6 keys: 6 done" in r.out and "ok" in r.out
    lines = path.read_text().splitlines()
    bad = json.loads(lines[1])
    del bad["attempt"]
    wrong_key = json.loads(lines[3])
    wrong_key["key"] = "o1/9/1"
    lines[1] = json.dumps(bad)
    lines[3] = json.dumps(wrong_key)
    lines.insert(5, "<<<<<<< HEAD")
    lines.insert(7, "{not json")
    path.write_text("\n".join(lines) + "\n" + '{"v": 1, "ev')  # and a torn last line
    r = run("ledger", "verify", str(plan), "--format", "json")
    doc = json.loads(r.out)
    assert r.code == 3
    where = [p.split(": ")[0] for p in doc["problems"]]
    assert where == [f"{path}:{n}" for n in (2, 4, 6, 8, 15)]
    assert "merge=union" in doc["problems"][2] and "incomplete last line" in doc["problems"][4]
    assert doc["counts"]["real"]  # the good lines are still counted


def test_compact_command(tmp_path: Path, run, sim, sim_env) -> None:
    plan = applied(tmp_path, run, sim)
    path = tmp_path / "plan.ledger.jsonl"
    now = ("--now", "2026-06-01T00:00:00Z")
    before = run("plan", str(plan), "--format", "json", *now).out
    r = run("ledger", "compact", str(plan))
    assert r.code == 0 and "12 records -> 6" in r.out
    assert run("plan", str(plan), "--format", "json", *now).out == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["plan.ledger.jsonl", "plan.ledger.jsonl.lock", "plan.yaml"]
    with ledger.Lock(str(path), "an-apply") as lock:
        lock.acquire(0)
        r = run("ledger", "compact", str(plan))
    assert r.code == 3 and "locked" in r.err
    assert run("ledger", "compact", "--ledger", "postgresql://u@db/x").code == 2
    link = tmp_path / "link.jsonl"
    link.symlink_to(path)
    assert run("ledger", "compact", "--ledger", str(link)).code == 3
    assert run("apply", str(plan), "--yes", "--format", "json").code == 0  # still all done
    assert len(sim.triggers()) == 6


def test_rerunning_a_done_entry_ends_reconciled_with_why(tmp_path: Path, run, sim, sim_env) -> None:
    plan = applied(tmp_path, run, sim)
    path = tmp_path / "plan.ledger.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    key = recs[0]["key"]
    path.write_bytes(ledger.encode([r for r in recs if r["key"] != key]))  # deleted by hand
    r = run("apply", str(plan), "--yes", "--format", "json")
    assert r.code == 0, r.err
    entry = next(e for e in json.loads(r.out)["entries"] if e["key"] == key)
    assert entry["status"] == "reconciled"
    assert "already on the service" in entry["error"]
    assert len([t for t in sim.triggers() if t["flowInstanceId"]]) == 6  # no second instance
    assert len(sim.triggers()) >= 7  # the second trigger was sent and refused (62102)


# -- findings of the round-3 probe and the newcomer trial ----------------------------------------


def test_n9_export_refuses_the_ledger_itself_a_hard_link_and_a_symlink(tmp_path: Path, run, sim, sim_env) -> None:
    plan = applied(tmp_path, run, sim)
    path = tmp_path / "plan.ledger.jsonl"
    before = path.read_bytes()
    link = tmp_path / "hard.jsonl"
    os.link(path, link)
    sym = tmp_path / "sym.jsonl"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    sym.symlink_to(victim)
    for target, why in (
        (path, "is the ledger being exported itself"),
        (link, "is the ledger being exported itself"),
        (sym, "is a symbolic link; refusing to write through it"),
    ):
        r = run("ledger", "export", "--ledger", str(path), str(target))
        assert r.code == 2 and why in r.err, r.err
    assert path.read_bytes() == before and victim.read_text() == "keep me\n"
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    r = run("ledger", "export", "--ledger", str(path), str(out))
    assert r.code == 0 and out.read_bytes() == before  # replaced by rename, whole
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert json.loads(run("plan", str(plan), "--format", "json").out)["summary"] == {"done": 6}


def test_n18_compaction_removes_stale_temporary_files_under_the_lock(tmp_path: Path, run, sim, sim_env) -> None:
    plan = applied(tmp_path, run, sim)
    path = tmp_path / "plan.ledger.jsonl"
    stale = tmp_path / ".plan.ledger.jsonl.ab_cd123.compact"  # what a kill -9 leaves
    stale.write_bytes(path.read_bytes())
    other = tmp_path / ".plan.ledger.jsonl.x.jsonl.notours.compact"  # not a name compaction makes
    other.write_text("x")
    r = run("ledger", "compact", str(plan))
    assert r.code == 0, r.err
    assert f"{stale}: removed a temporary file an interrupted compaction left" in r.err
    assert not stale.exists() and other.exists()


def test_n20_a_password_in_ledger_is_warned_about(tmp_path: Path, run) -> None:
    from planrunner.commands import context

    assert context.has_password("postgresql://u:PGPASS-s3cr3t-9z@127.0.0.1:1/db")
    assert context.has_password("postgresql://u@127.0.0.1:1/db?password=PGPASS-s3cr3t-9z")
    assert not context.has_password("postgresql://u@127.0.0.1:1/db")
    assert not context.has_password(str(tmp_path / "l.jsonl"))
    r = run("ledger", "log", "--ledger", "postgresql://u:PGPASS-s3cr3t-9z@127.0.0.1:1/db?connect_timeout=1")
    assert r.code == 3
    assert "--ledger carries a password: every local user can read it in the process list" in r.err
    assert "PLANRUNNER_LEDGER" in r.err and "PGPASSWORD" in r.err
    assert "PGPASS-s3cr3t-9z" not in r.err + r.out


def test_finding_27_log_shows_local_time_and_flow_and_filters_by_time(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 3), gateway=sim.url, zone="Asia/Shanghai")
    assert run("apply", str(plan), "--yes", "--quiet").code == 0
    doc = json.loads(run("ledger", "log", str(plan), "--format", "json").out)
    first = doc["keys"][0]
    assert first["time"] == "2026-01-01T00:00:00+08:00" and first["flows"] == ["f1"]
    text = run("ledger", "log", str(plan)).out
    assert f"2026-01-01T00:00:00+08:00  f1  done  ({first['key']})" in text
    # Without the plan: UTC, the flow named by the intents.
    path = str(tmp_path / "plan.ledger.jsonl")
    bare = json.loads(run("ledger", "log", "--ledger", path, "--format", "json").out)
    assert bare["keys"][0]["time"] == "2025-12-31T16:00:00+00:00" and bare["keys"][0]["flows"] == ["f1"]
    since = json.loads(
        run("ledger", "log", str(plan), "--since", "2026-01-01T00:05:00+08:00", "--until", "2026-01-01T00:05:00+08:00", "--format", "json").out
    )
    assert sorted((k["flows"][0], k["time"]) for k in since["keys"]) == [
        ("f1", "2026-01-01T00:05:00+08:00"),
        ("f2", "2026-01-01T00:05:00+08:00"),
    ]
    r = run("ledger", "log", str(plan), "--since", "yesterday-ish")
    assert r.code == 2 and "--since:" in r.err
    labels = tools.flow_labels(read_plan(str(plan)))  # what plan's orphan lines can show
    assert tools.key_label(first["key"], labels) == "2026-01-01T00:00:00+08:00 f1"
    assert tools.key_label("o1/99/60000", labels) == "1970-01-01T00:01:00+00:00 flow 99"


def test_n12_log_never_crashes_on_a_non_string_at(tmp_path: Path, run) -> None:
    path = tmp_path / "l.jsonl"
    good = ledger.record("intent", "o1/1/60000", 1, "o1", 60000, "a", flow="f", run="r")
    path.write_bytes(ledger.encode([good, {**good, "attempt": "b", "at": [1]}]))
    r = run("ledger", "log", "--ledger", str(path))
    assert r.code == 3 and f'{path}:2: corrupt ledger line ("at" is list, not str)' in r.err
    assert "internal error" not in r.err


def test_finding_33_a_missing_ledger_is_noted_by_readers_not_by_a_first_apply(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2), gateway=sim.url)
    missing = str(tmp_path / "nope.ledger.jsonl")
    note = "the ledger given does not exist"
    assert note in run("plan", str(plan), "--ledger", missing).err
    assert note in run("ledger", "log", "--ledger", missing).err
    assert note in run("ledger", "export", "--ledger", missing, str(tmp_path / "x.jsonl")).err
    r = run("apply", str(plan), "--yes", "--quiet", "--ledger", missing)
    assert r.code == 0 and note not in r.err and os.path.exists(missing)


def test_finding_21_an_apply_with_nothing_to_do_creates_no_ledger(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(
        tmp_path, '  - {name: off, flowId: 1, cron: "0 * * * *", from: 2026-01-01, count: 2, enabled: false}\n', gateway=sim.url
    )
    r = run("apply", str(plan), "--yes")
    assert r.code == 0, r.err
    assert not (tmp_path / "plan.ledger.jsonl").exists()

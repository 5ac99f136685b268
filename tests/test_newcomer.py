"""What a new user tripped over (newcomer trial findings), each pinned by a test.

The finding numbers are those of the newcomer trial report; terminal findings run through a
pseudo-terminal, as a person would see them.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from planrunner import ledger
from planrunner.sim import Faults, SimFlow, Simulator
from planrunner.terminal import Progress
from testing import (
    FAST_ENV,
    ROOT,
    SIM_ENV,
    apply_json,
    cron_flows,
    run_in_pty,
    run_process,
    write_plan,
)

EXAMPLE = str(ROOT / "plans" / "example.yaml")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# --- 1, 2, 27: the progress bar --------------------------------------------------------------


def test_1_2_27_the_bar_counts_only_its_total_fits_the_width_and_shows_rate_and_eta() -> None:
    p = Progress(10, enabled=False)
    for _ in range(7):
        p.add("skipped")  # done before the run: not part of the total
    for _ in range(12):
        p.add("triggered")  # more than the total: the bar still stops at 100%
    for width in (40, 60, 160):
        line = p.line(width)
        assert len(line) < width, line
        assert "10/10" in line and "12/10" not in line and "skipped" not in line
    p = Progress(100, enabled=False)
    p.add("triggered")
    assert re.search(r"\d+/s ETA \d+:\d\d", p.line(160)), p.line(160)


def test_1_2_on_a_60_column_terminal_the_bar_never_wraps_nor_passes_100(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 40))
    with Simulator(faults=Faults(latency=0.005), accept_unknown_flows=True) as sim:
        # Half of it done first, so the second run has skipped entries beside its total.
        half = write_plan(tmp_path, cron_flows(1, 40), name="plan.yaml")
        run_process(["apply", str(half), "--gateway", sim.url, "--yes"], env={**SIM_ENV, **FAST_ENV})
        plan = write_plan(tmp_path, cron_flows(2, 40))
        code, _out, screen = run_in_pty(
            ["apply", str(plan), "--gateway", sim.url, "--yes"], columns=60
        )
    assert code == 0, screen
    frames = [ANSI.sub("", f) for f in re.split(r"[\r\n]", screen) if f.startswith("[")]
    assert frames, screen
    for frame in frames:
        assert len(frame) < 60, frame
        done, total = map(int, re.search(r"(\d+)/(\d+)", frame).groups())  # type: ignore[union-attr]
        assert total == 40 and done <= total, frame


# --- 3, 12: simulator records never count for a real run ------------------------------------


def test_3_12_sim_records_in_a_real_ledger_never_mark_real_entries_done(
    tmp_path: Path, run: Any
) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 4))
    real = tmp_path / "plan.ledger.jsonl"
    r = run("apply", str(plan), "--sim", "--yes", "--ledger", str(real))
    assert r.code == 0, r.err
    records = [json.loads(x) for x in real.read_text().splitlines()]
    assert records and {x["gateway"] for x in records} == {"sim"}
    doc = json.loads(run("plan", str(plan), "--format", "json").out)
    assert doc["summary"] == {"pending": 4}, "a demo marked real entries done"
    # plan --sim reads what apply --sim did (its own ledger by default).
    r = run("apply", str(plan), "--sim", "--yes")
    assert r.code == 0
    assert json.loads(run("plan", str(plan), "--sim", "--format", "json").out)["summary"] == {
        "done": 4
    }


# --- 5: reconciled is not skipped ----------------------------------------------------------


def test_5_entries_found_on_the_service_are_reconciled_not_skipped(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 3))
    with Simulator(accept_unknown_flows=True) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
        # The ledger is lost: the service already has every instance.
        r, doc = apply_json(run, plan, sim.url, "--ledger", str(tmp_path / "fresh.jsonl"))
    assert r.code == 0, r.err
    assert doc["summary"] == {"reconciled": 3}
    assert all(e["error"].startswith("already on the service") for e in doc["entries"])


# --- 6, 7, 16: interrupted entries are pending; Python's None never shows ---------------


def test_6_an_aborted_intent_folds_to_pending_and_no_message_says_none(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"

    class Ref:
        key, flow_id, org_id, trigger_time = "o1/1/1767225600000", 1, "o1", 1767225600000

    path.write_bytes(
        ledger.encode(
            [
                ledger.intent(Ref, "a1", gateway="https://x", flow="f", run="r"),
                ledger.aborted(Ref, "a1", gateway="https://x", reason="interrupted"),
                ledger.intent(Ref, "a2", gateway="https://x", flow="f", run="r"),
                ledger.record("failed", Ref.key, 1, "o1", Ref.trigger_time, "a2", gateway="https://x"),
            ]
        )
    )
    folded = ledger.fold(str(path))
    assert folded.status(Ref.key) == "failed"
    assert "None" not in (folded.state(Ref.key).error or "")
    path.write_bytes(path.read_bytes().splitlines(keepends=True)[0] + path.read_bytes().splitlines(keepends=True)[1])
    assert ledger.fold(str(path)).status(Ref.key) == "pending"


def test_7_a_token_error_without_a_code_says_no_none(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 1))
    p = run_process(
        ["apply", str(plan), "--gateway", "http://127.0.0.1:9", "--yes"], env=SIM_ENV
    )
    assert p.returncode == 1
    assert "cannot get an access token" in p.stderr and "None" not in p.stderr


# --- 8, 26: the confirmation names scheme, host and port; "yes" is yes -----------------


def test_8_26_the_prompt_names_the_port_and_yes_means_yes(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    with Simulator(accept_unknown_flows=True) as sim:
        code, _out, screen = run_in_pty(["apply", str(plan), "--gateway", sim.url], answer="yes")
        assert code == 0, screen
        assert f"to {sim.url} as user u1 in org o1" in screen
        assert len(sim.triggers()) == 2


def test_28_gateway_with_sim_is_refused(tmp_path: Path, run: Any) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 1))
    r = run("apply", str(plan), "--sim", "--gateway", "http://127.0.0.1:1", "--yes")
    assert r.code == 2
    assert "--gateway cannot be combined with --sim" in r.err


# --- 10, 20, 21, 36: messages ---------------------------------------------------------------


def _validate(tmp_path: Path, run: Any, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    r = run("validate", str(path))
    assert r.code == 2
    return [line.split(": error: ", 1)[1] for line in r.err.splitlines() if ": error: " in line]


HEAD = "version: 1\ntarget: {gateway: https://apigw.example.com, orgId: o1, userId: u}\n"


def test_10_a_misspelt_zone_is_one_error_not_also_no_zone(tmp_path: Path, run: Any) -> None:
    errors = _validate(
        tmp_path,
        run,
        HEAD + 'flows:\n  - {name: a, flowId: 1, timezone: Europe/Berlim, at: ["2026-01-01 02:00"]}\n',
    )
    assert errors == ['flows[0].timezone: unknown time zone "Europe/Berlim" (did you mean "Europe/Berlin"?)']


def test_20_tabs_are_named_as_tabs(tmp_path: Path, run: Any) -> None:
    errors = _validate(tmp_path, run, "version: 1\ntarget:\n\tgateway: x\n")
    assert len(errors) == 1 and "tab" in errors[0] and "use spaces" in errors[0]


def test_21_the_root_cause_only(tmp_path: Path, run: Any) -> None:
    typo = HEAD + "timezone: UTC\nflows:\n  - name: a\n    flowId: 1\n    corn: '0 2 * * *'\n    from: 2026-01-01\n    to: 2026-01-02\n"
    assert _validate(tmp_path, run, typo) == ['flows[0]: unknown key "corn" (did you mean "cron"?)']
    both = HEAD + "timezone: UTC\nflows:\n  - {name: a, flowId: 1, at: [2026-01-01], cron: '0 * * * *'}\n"
    assert _validate(tmp_path, run, both) == ['flows[0]: needs exactly one of "at", "cron" or "dates"']


def test_36_yaml_hints(tmp_path: Path, run: Any) -> None:
    errors = _validate(
        tmp_path,
        run,
        "version: 1\ntarget: {gateway: https://apigw.example.com, orgId: 15589291262751, userId: u}\n"
        "timezone: UTC\nflows:\n  - {name: a, flowId: 1, enabled: no, at: 2026-01-01}\n",
    )
    joined = "\n".join(errors)
    assert 'quote it: "15589291262751"' in joined
    assert '"no" is a string in YAML 1.2: write false' in joined
    assert "write at: [2026-01-01]" in joined


# --- 13, 14: a run that ends interrupted or with unknown entries says what to do -------------


def test_14_unknown_entries_end_with_what_to_do(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    with Simulator(faults=Faults.parse(["504-after-create=1", "lookup-503=1"]), accept_unknown_flows=True) as sim:
        r, doc = apply_json(run, plan, sim.url)
    assert r.code == 1
    assert doc["summary"] == {"unknown": 2}
    assert "apply again to look them up, or add --retry-unknown" in r.err


# --- 19, 24: usage ------------------------------------------------------------------------------


def test_19_an_unknown_option_gets_the_subcommand_usage_and_a_did_you_mean(run: Any) -> None:
    p = run_process(["plan", EXAMPLE, "--formt", "json"])
    assert p.returncode == 2
    assert p.stderr.startswith("usage: planrunner plan")
    assert 'did you mean "--format"' in p.stderr
    p = run_process(["valdate", EXAMPLE])
    assert 'did you mean "validate"' in p.stderr


def test_24_each_command_lists_only_its_own_exit_codes_and_an_example() -> None:
    out = run_process(["validate", "--help"]).stdout
    codes = re.findall(r"^  (\d+) ", out.split("exit codes:")[1], re.M)
    assert codes == ["0", "2"]
    assert "example:" in out
    apply_codes = re.findall(r"^  (\d+) ", run_process(["apply", "--help"]).stdout.split("exit codes:")[1], re.M)
    assert apply_codes == ["0", "1", "2", "3", "4", "130"]


# --- 27, 42: colour only on a terminal, never with NO_COLOR; short log lines ----------------


def test_42_27_markers_are_coloured_on_a_terminal_and_not_with_no_color(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    piped = run_process(["plan", str(plan)])
    assert "\x1b[" not in piped.stdout
    with Simulator(accept_unknown_flows=True) as sim:
        code, _out, screen = run_in_pty(["apply", str(plan), "--gateway", sim.url, "--yes"], columns=100)
    assert code == 0
    log_lines = [ANSI.sub("", x) for x in screen.splitlines() if "planrunner:" in x]
    assert log_lines and all(len(x) < 100 for x in log_lines), log_lines
    assert not any(re.match(r"\d{4}-\d\d-\d\dT", x) for x in log_lines)


def test_42_colour_on_a_terminal_for_plan_markers(tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    plan = write_plan(tmp_path, cron_flows(1, 2))

    def plan_on_terminal(no_color: bool) -> str:
        controller, terminal = pty.openpty()
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        if no_color:
            env["NO_COLOR"] = "1"
        proc = subprocess.Popen(
            [sys.executable, "-m", "planrunner", "plan", str(plan)],
            stdout=terminal, stderr=subprocess.DEVNULL, cwd=ROOT, env=env,
        )
        os.close(terminal)
        data = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        proc.wait()
        os.close(controller)
        return data.decode()

    assert "\x1b[32m+\x1b[0m" in plan_on_terminal(no_color=False)
    assert "\x1b[" not in plan_on_terminal(no_color=True)


# --- 29: nothing to do needs no confirmation --------------------------------------------------


def test_29_nothing_to_do_exits_0_without_asking(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    with Simulator(accept_unknown_flows=True) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
        # No --yes and no terminal: still fine, since nothing is to be sent.
        p = run_process(["apply", str(plan), "--gateway", sim.url], env={**SIM_ENV, **FAST_ENV})
    assert p.returncode == 0, p.stderr
    assert "nothing to do" in p.stderr


# --- 32, 33, 34: the ledger speaks up ---------------------------------------------------------


def test_32_plan_says_when_an_apply_holds_the_lock(tmp_path: Path, run: Any) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    path = str(tmp_path / "plan.ledger.jsonl")
    with ledger.Lock(path, "r-held") as lock:
        lock.acquire(0)
        r = run("plan", str(plan))
    assert r.code == 0
    assert "an apply holds the ledger lock" in r.err and "r-held" in r.err


def test_33_a_git_conflict_marker_gets_a_merge_union_hint(tmp_path: Path, run: Any) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    (tmp_path / "plan.ledger.jsonl").write_text("<<<<<<< HEAD\n")
    r = run("plan", str(plan))
    assert r.code == 3
    assert "merge=union" in r.err and ":1:" in r.err


def test_34_an_explicit_ledger_that_does_not_exist_is_named(tmp_path: Path, run: Any) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    missing = tmp_path / "typo" / "l.jsonl"
    r = run("plan", str(plan), "--ledger", str(missing))
    assert r.code == 0
    assert "does not exist" in r.err and str(missing) in r.err


# --- 15: a refused flow is not sent again this run --------------------------------------------


def test_15_a_permanent_refusal_holds_the_rest_of_the_flow(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 5))
    with Simulator([SimFlow(1, users=("someone-else",))], accept_unknown_flows=True) as sim:
        r, doc = apply_json(run, plan, sim.url)
        sent_to_1 = [t for t in sim.triggers() if t["flowId"] == 1]
    assert r.code == 1
    assert len(sent_to_1) == 1
    assert doc["summary"] == {"pending": 4, "triggered": 5, "failed": 1}


# --- 16, 17: output a reviewer can check ------------------------------------------------------


def test_16_headers_show_the_schedule_offsets_stay_visible_and_gap_moves_are_marked(
    tmp_path: Path, run: Any
) -> None:
    plan = write_plan(
        tmp_path,
        '  - {name: berlin, flowId: 1, cron: "30 2 * * *", from: 2026-03-20, to: 2026-04-05}\n',
        zone="Europe/Berlin",
    )
    out = run("plan", str(plan)).out
    assert 'cron "30 2 * * *" from 2026-03-20T00:00:00+01:00' in out
    # The lines on both sides of the +01:00 -> +02:00 change are shown, not folded away.
    assert "2026-03-28T02:30:00+01:00" in out
    assert "2026-03-29T03:00:00+02:00" in out and "(moved by a DST gap)" in out
    assert "2026-03-30T02:30:00+02:00" in out


def test_17_orphans_are_counted_and_listed(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 4))
    with Simulator(accept_unknown_flows=True) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
    plan.write_text(plan.read_text().replace("count: 4", "count: 2"))
    doc = json.loads(run("plan", str(plan), "--format", "json").out)
    assert len(doc["orphans"]) == 2 and {o["status"] for o in doc["orphans"]} == {"done"}
    assert "2 ledger entries no longer in the plan" in run("plan", str(plan)).out


def test_22_a_stopped_apply_still_prints_its_json_with_the_error(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 3))
    with Simulator(faults=Faults(rates={"http-401": 1.0}), accept_unknown_flows=True) as sim:
        r, doc = apply_json(run, plan, sim.url)
    assert r.code == 1
    assert doc["formatVersion"] == 1
    assert doc["error"] and "stopping" in doc["error"]


def test_43_completion_scripts_are_made_from_the_parser(tmp_path: Path) -> None:
    import subprocess

    bash = run_process(["completion", "bash"]).stdout
    script = tmp_path / "c.bash"
    script.write_text(bash)
    probe = subprocess.run(
        ["bash", "-c", f'source {script}; COMP_WORDS=(planrunner apply --conc); COMP_CWORD=2; _planrunner; echo "${{COMPREPLY[@]}}"'],
        capture_output=True, text=True, check=True,
    )
    assert probe.stdout.split() == ["--concurrency"]
    fish = run_process(["completion", "fish"]).stdout
    assert "complete -c planrunner -n '__fish_seen_subcommand_from apply' -l concurrency" in fish
    assert "bashcompinit" in run_process(["completion", "zsh"]).stdout


def test_13_ctrl_c_on_a_terminal_leaves_a_clean_line_and_says_how_to_continue(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(4, 50))
    with Simulator(faults=Faults(latency=0.02), accept_unknown_flows=True) as sim:
        argv = ["apply", str(plan), "--gateway", sim.url, "--yes"]  # what a person sees
        code, screen = _in_pty(argv, _interrupt_once_sent(sim, 20), stdin_tty=False)
    assert code == 130, screen
    # The bar's line is cleared before the message, so the two never share a line.
    assert "\r\x1b[Kplanrunner: interrupted; finishing requests in flight" in screen
    last = [line for line in ANSI.sub("", screen).splitlines() if line.strip()][-1]
    assert "the run was interrupted" in last and "planrunner apply" in last


def test_46_quiet_prints_the_summary_only(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 3))
    with Simulator(accept_unknown_flows=True) as sim:
        r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--quiet")
    assert r.code == 0, r.err
    assert r.out.strip() == "Apply: 6 entries (6 triggered)."


# --- second trial: findings 3, 4, 8, 9, 12, 25, 35 ----------------------------------------------


def _in_pty(argv: list[str], react: Any, *, stdin_tty: bool = True, timeout: float = 60) -> tuple[int, str]:
    """`python -m planrunner ARGV` with stderr (and stdin) on a pseudo-terminal.

    ``react(screen, proc)`` is called after each chunk the terminal shows; it may signal the
    process. Returns (exit code, the whole screen).
    """
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    controller, term = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "planrunner", *argv],
        stdin=term if stdin_tty else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=term,
        cwd=ROOT,
        env={**os.environ, **SIM_ENV, **FAST_ENV},
    )
    os.close(term)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            # Never block past the deadline: a child that stops writing but does not exit
            # must fail the test, not hang the suite.
            ready, _, _ = select.select([controller], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                data = os.read(controller, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
            react(b"".join(chunks).decode(errors="replace"), proc)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def _interrupt_once_sent(sim: Simulator, count: int, times: int = 1) -> Any:
    """A ``react`` that sends SIGINT ``times`` times once ``count`` triggers reached the sim."""
    import signal
    import time

    sent: list[int] = []

    def react(screen: str, proc: Any) -> None:
        while not sent and len(sim.state.triggers) < count and proc.poll() is None:
            time.sleep(0.01)
        while len(sent) < times and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            sent.append(1)
            time.sleep(0.2)

    return react


def test_finding_3_the_continue_hint_repeats_where_and_what_is_sent_shell_quoted(
    tmp_path: Path,
) -> None:
    import shlex

    plan = write_plan(tmp_path, cron_flows(3, 40))
    ledger_path = tmp_path / "my ledger.jsonl"  # a space: the hint must quote it
    with Simulator(faults=Faults(latency=0.02), accept_unknown_flows=True) as sim:
        argv = [
            "apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(ledger_path),
            "--max-triggers", "500", "--flow", "f[12]", "--exclude", "f2",
        ]
        code, screen = _in_pty(argv, _interrupt_once_sent(sim, 5), stdin_tty=False)
    assert code == 130, screen
    last = [line for line in ANSI.sub("", screen).splitlines() if line.strip()][-1]
    assert "Run the same command again to continue: " in last, last
    again = shlex.split(last.split("continue: ", 1)[1])
    assert again[:3] == ["planrunner", "apply", str(plan)]
    pairs = {(again[i], again[i + 1]) for i in range(3, len(again) - 1)}
    for pair in [
        ("--gateway", sim.url),
        ("--ledger", str(ledger_path)),
        ("--max-triggers", "500"),
        ("--flow", "f[12]"),
        ("--exclude", "f2"),
    ]:
        assert pair in pairs, (pair, last)


def test_finding_3_a_sim_run_says_sim_again(tmp_path: Path) -> None:
    from planrunner.cli import build_parser
    from planrunner.commands.apply import again_command

    args = build_parser("apply").parse_args(["apply", "p q.yaml", "--sim", "--now", "2026-01-01"])
    assert again_command(args) == "planrunner apply 'p q.yaml' --sim --now 2026-01-01"


def _log_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in err.splitlines() if x.startswith("{")]


def test_finding_4_global_options_before_the_command_count_as_after_it(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 3))
    a, b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
    before = run("-v", "--log-format", "json", "apply", str(plan), "--sim", "--yes", "-q", "--ledger", a)
    after = run("apply", str(plan), "--sim", "--yes", "-q", "--ledger", b, "-v", "--log-format", "json")
    assert before.code == after.code == 0, before.err
    levels = {x["level"] for x in _log_lines(before.err)}
    assert "debug" in levels, before.err  # -v before the command is honoured
    assert len(_log_lines(before.err)) == len(_log_lines(after.err)) > 2
    # --log-format before the command decides how a plan error is printed.
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nflows: 3\n")
    r = run("--log-format", "json", "plan", str(bad))
    assert r.code == 2
    assert all(line.startswith("{") for line in r.err.splitlines()), r.err
    assert _log_lines(r.err)[0]["level"] == "error"


def test_finding_8_every_subcommand_takes_the_global_options_and_no_hint_names_the_refused_option(
    tmp_path: Path, run: Any
) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 3))
    r = run("ledger", "verify", str(plan), "--log-format", "json")
    assert r.code == 2 and json.loads(r.err)["event"].endswith("no such ledger"), r.err
    (tmp_path / "plan.ledger.jsonl").write_text("")
    for sub in ("log", "verify"):
        r = run("ledger", sub, str(plan), "--log-format", "json", "-v")
        assert r.code == 0, r.err
        r = run("ledger", "-v", sub, str(plan))
        assert r.code == 0, r.err
    r = run("ledger", "export", "--ledger", str(tmp_path / "none.jsonl"), "-", "-v")
    assert "unrecognized" not in r.err
    # An option a command does not take: the hint never suggests that same option.
    import pytest

    with pytest.raises(SystemExit) as e:
        run("ledger", "log", str(plan), "--lock-timeout", "3")
    assert e.value.code == 2
    from planrunner.commands import options

    parser = options.Parser(prog="x")
    parser.add_argument("--log-format")
    assert options._did_you_mean(parser, "unrecognized arguments: --log-format json") == ""


def test_finding_9_sim_is_suggested_only_where_the_command_has_it(
    tmp_path: Path, run: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("ENOS_ACCESS_KEY", raising=False)
    monkeypatch.delenv("ENOS_SECRET_KEY", raising=False)
    plan = write_plan(tmp_path, cron_flows(1, 1))
    (tmp_path / "plan.ledger.jsonl").write_text(
        json.dumps(
            ledger.intent(_Ref, "a1", gateway="https://apigw.example.com", flow="f1", run="r")
        )
        + "\n"
    )
    for argv in (["doctor", str(plan)], ["cancel", str(plan), "--yes"]):
        r = run(*argv)
        assert r.code == 2, r.err
        assert "ENOS_ACCESS_KEY and ENOS_SECRET_KEY not set" in r.err
        assert "--sim" not in r.err, r.err
    r = run("apply", str(plan), "--yes")
    assert r.code == 2 and "(or use --sim)" in r.err, r.err


class _Ref:
    key, flow_id, org_id, trigger_time = "o1/1/1767225600000", 1, "o1", 1767225600000


def test_finding_12_a_second_ctrl_c_ends_the_line_and_says_what_happens(tmp_path: Path) -> None:
    import signal
    import time

    plan = write_plan(tmp_path, cron_flows(2, 30))

    def react(screen: str, proc: Any) -> None:
        # Requests take 3 s: both Ctrl-Cs land while the first ones are in flight.
        if "apply starting" in screen and "interrupted" not in screen:
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)

    with Simulator(faults=Faults(latency=3.0), accept_unknown_flows=True) as sim:
        argv = ["apply", str(plan), "--gateway", sim.url, "--yes"]
        code, screen = _in_pty(argv, react, stdin_tty=False)
    assert code == 130, screen
    assert screen.endswith(
        "\nplanrunner: quit now; the next apply reconciles what was in flight\r\n"
    ), screen[-300:]


def test_finding_12_ctrl_c_at_the_prompt_ends_the_prompt_line_first(tmp_path: Path) -> None:
    import signal

    plan = write_plan(tmp_path, cron_flows(1, 2))

    def react(screen: str, proc: Any) -> None:
        if screen.rstrip().endswith("[y/N]") and proc.poll() is None:
            proc.send_signal(signal.SIGINT)

    with Simulator(accept_unknown_flows=True) as sim:
        code, screen = _in_pty(["apply", str(plan), "--gateway", sim.url], react)
        assert sim.triggers() == []
    assert code == 130, screen
    assert re.search(r"Proceed\? \[y/N\] \r?\nplanrunner: interrupted", screen), screen[-300:]


def test_finding_35_the_confirmation_shows_the_plan_per_flow_before_asking(tmp_path: Path) -> None:
    flows = cron_flows(2, 3) + '  - {name: off, flowId: 9, cron: "0 * * * *", from: 2026-01-01, count: 2, enabled: false}\n'
    plan = write_plan(tmp_path, flows)
    with Simulator(accept_unknown_flows=True) as sim:
        code, _out, screen = run_in_pty(["apply", str(plan), "--gateway", sim.url], answer="n")
        assert sim.triggers() == []
    assert code == 1, screen
    asked = ANSI.sub("", screen).split("Proceed? [y/N]")[0]
    for name, flow_id in (("f1", 1), ("f2", 2)):
        assert f"flow {name} (flowId {flow_id}, UTC): 3 entries" in asked, asked
    assert 'cron "*/5 * * * *" from 2026-01-01T00:00:00+00:00 count 3' in asked
    assert "flow off (flowId 9, UTC): disabled" in asked
    assert "2026-01-01T00:10:00+00:00" in asked  # each entry to be sent, with its status
    assert "Plan: 6 entries (6 pending); 1 flow disabled." in asked


def test_finding_25_format_json_always_prints_an_object_with_the_error(
    tmp_path: Path, run: Any, monkeypatch: Any
) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    bad = tmp_path / "typo.yaml"
    bad.write_text(plan.read_text().replace("cron:", "corn:"))

    def doc_of(*argv: str) -> dict[str, Any]:
        r = run(*argv)
        assert r.code != 0, r
        doc: dict[str, Any] = json.loads(r.out)
        assert doc["formatVersion"] == 1 and doc["error"], doc
        assert doc["exitCode"] == r.code
        return doc

    # A plan error.
    for command in ("plan", "apply", "status"):
        doc = doc_of(command, str(bad), "--format", "json", *(["--yes"] if command == "apply" else []))
        assert "unknown key" in doc["error"] and doc["problems"], doc
    # Credentials missing.
    monkeypatch.delenv("ENOS_ACCESS_KEY", raising=False)
    monkeypatch.delenv("ENOS_SECRET_KEY", raising=False)
    assert "not set" in doc_of("apply", str(plan), "--yes", "--format", "json")["error"]
    assert "not set" in doc_of("doctor", str(plan), "--format", "json")["error"]
    # Connection refused.
    for k, v in SIM_ENV.items():
        monkeypatch.setenv(k, v)
    url = "http://127.0.0.1:1"
    doc = doc_of("apply", str(plan), "--yes", "--gateway", url, "--format", "json")
    assert "refused" in doc["error"], doc
    # A usage error argparse finds, with --format json before or after the bad word.
    for argv in (
        ["status", str(plan), "--format", "json", "--bogus"],
        ["ledger", "log", str(plan), "--format=json", "--bogus"],
        ["plan", str(plan), "--bogus", "--format", "json"],
        ["apply", str(plan), "--format", "json", "--concurrency", "0"],
    ):
        p = run_process(argv)
        assert p.returncode == 2, p.stderr
        doc = json.loads(p.stdout)
        assert doc["formatVersion"] == 1 and doc["exitCode"] == 2, doc
        assert doc["error"] in p.stderr, (doc, p.stderr)  # the same line as on stderr




# --- 11: log lines and the progress bar ---------------------------------------------------------


def test_finding_11_a_known_wait_shows_on_the_bar_instead_of_a_short_eta() -> None:
    p = Progress(10, enabled=False)
    p.add("triggered")
    assert "ETA" in p.line(160)
    p.note({"event": "62102 and no instance found; waiting out the one-minute rule", "seconds": 61})
    line = p.line(160)
    assert re.search(r"waiting 1:0[01]", line) and "ETA" not in line, line
    p.note({"event": "apply starting", "seconds": 500})  # not a wait: not counted
    assert re.search(r"waiting 1:0[01]", p.line(160))


def test_finding_11_a_log_line_never_lands_on_the_bar(tmp_path: Path) -> None:
    from planrunner.sim import Dialect

    plan = write_plan(tmp_path, cron_flows(1, 3, step="0"))
    dialect = Dialect(duplicate="wall-clock", duplicate_window=1.5)
    with Simulator(faults=Faults(latency=0.05), dialect=dialect, accept_unknown_flows=True) as sim:
        code, _out, screen = run_in_pty(
            ["apply", str(plan), "--gateway", sim.url, "--yes"],
            env={"PLANRUNNER_DUPLICATE_WAIT": "1.6"},
        )
    assert code == 0, screen
    assert "waiting out the one-minute rule" in screen, screen
    # The bar is wiped before each log line and drawn again after it, never joined to it.
    assert not re.search(r"\[[#-]+\][^\r\n]*planrunner: ", screen), screen
    assert re.search(r"\r\x1b\[Kplanrunner: 62102 and no instance found", screen), screen
    bars = [ANSI.sub("", f) for f in re.split(r"[\r\n]", screen) if f.startswith("[")]
    assert any(re.search(r" waiting 0:0\d", b) for b in bars), bars


# --- 5: status --watch -------------------------------------------------------------------------


class _LookupClock:
    """The simulator's clock: real until :meth:`drive`, then moved on by each lookup the
    simulator serves, so every poll of a watch sees time pass by the same amount however
    loaded the machine is (the instances end after a known number of polls, never before
    the second)."""

    STEP = 0.4  # simulated seconds per lookup served

    def __init__(self) -> None:
        self.sim: Simulator | None = None
        self.base: float | None = None
        self.lookups = 0

    def drive(self, sim: Simulator) -> None:
        self.sim, self.lookups, self.base = sim, sim.state.lookup_count, time.time()

    def __call__(self) -> float:
        if self.sim is None or self.base is None:
            return time.time()
        return self.base + self.STEP * (self.sim.state.lookup_count - self.lookups)


def _watch_setup(tmp_path: Path, sim: Simulator, run_process_env: dict[str, str], clock: _LookupClock) -> Path:
    plan = write_plan(tmp_path, cron_flows(2, 3))
    # f1 triggered (its instances run a second); f2 never: it must not blur the count.
    p = run_process(["apply", str(plan), "--gateway", sim.url, "--yes", "--flow", "f1"], env=run_process_env)
    assert p.returncode == 0, p.stderr
    clock.drive(sim)
    return plan


def test_finding_5_watch_on_a_terminal_is_one_line_in_place_with_one_count(tmp_path: Path) -> None:
    flows = [SimFlow(i, users=("u1",), org_id="o1", run_seconds=1.0) for i in (1, 2)]
    clock = _LookupClock()
    with Simulator(flows, accept_unknown_flows=True, clock=clock) as sim:
        plan = _watch_setup(tmp_path, sim, {**SIM_ENV, **FAST_ENV}, clock)
        code, out, screen = run_in_pty(
            ["status", str(plan), "--gateway", sim.url, "--watch", "--interval", "0.2"]
        )
    assert code == 0, screen
    assert "planrunner: watching" not in screen, screen  # no log line per poll on a terminal
    frames = [ANSI.sub("", f) for f in re.split(r"[\r\n]", screen) if "watching:" in f]
    assert len(frames) >= 2, screen
    for frame in frames:
        assert frame.startswith("watching: "), frame  # nothing joined before it
        ended, watched = map(int, re.search(r"(\d+)/(\d+) ended", frame).groups())  # type: ignore[union-attr]
        assert watched == 3 and ended <= watched, frame  # the 3 never triggered are not counted
        counted = sum(int(n) for n in re.findall(r"(\d+) [A-Z_]+", frame))
        assert counted == watched, frame
    assert "\n" not in screen.split("watching:", 1)[1].rsplit("\x1b[K", 1)[0], screen
    assert "Status: 6 entries" in out


def test_finding_5_watch_off_a_terminal_logs_one_line_per_poll(tmp_path: Path) -> None:
    flows = [SimFlow(i, users=("u1",), org_id="o1", run_seconds=1.0) for i in (1, 2)]
    clock = _LookupClock()
    with Simulator(flows, accept_unknown_flows=True, clock=clock) as sim:
        plan = _watch_setup(tmp_path, sim, {**SIM_ENV, **FAST_ENV}, clock)
        p = run_process(
            ["status", str(plan), "--gateway", sim.url, "--watch", "--interval", "0.2", "--log-format", "json"],
            env={**SIM_ENV, **FAST_ENV},
        )
    assert p.returncode == 0, p.stderr
    assert "watching:" not in p.stderr and "\r" not in p.stderr
    polls = [x for x in _log_lines(p.stderr) if x["event"] == "watching"]
    assert len(polls) >= 2, p.stderr
    for x in polls:
        counts = {k: v for k, v in x.items() if k.isupper()}
        assert x["watched"] == 3 == sum(counts.values()) and x["ended"] <= 3, x


# --- 38: several plans, stdin, -y, a time window ------------------------------------------------


def test_finding_38_apply_takes_several_plans_with_a_combined_report(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    a = write_plan(tmp_path, cron_flows(1, 2), name="a.yaml")
    b = write_plan(tmp_path, cron_flows(1, 3, first_id=5), name="b.yaml")
    with Simulator(accept_unknown_flows=True) as sim:
        r = run("apply", str(a), str(b), "--gateway", sim.url, "-y")
        assert r.code == 0, r.err
        assert len(sim.triggers()) == 5
        assert f"Apply {a}" in r.out and f"Apply {b}" in r.out
        assert r.out.rstrip().endswith("Apply: 2 of 2 plans, 5 entries (5 triggered).")
        r = run("apply", str(a), str(b), "--gateway", sim.url, "--yes", "--format", "json")
        doc = json.loads(r.out)
    assert r.code == 0, r.err
    assert [p["plan"] for p in doc["plans"]] == [str(a), str(b)]
    assert doc["formatVersion"] == 1 and doc["error"] is None
    assert [p["summary"] for p in doc["plans"]] == [{"skipped": 2}, {"skipped": 3}]
    # Each plan keeps its own ledger.
    assert (tmp_path / "a.ledger.jsonl").exists() and (tmp_path / "b.ledger.jsonl").exists()


def test_finding_38_a_bad_plan_among_several_stops_there_and_json_says_so(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    a = write_plan(tmp_path, cron_flows(1, 2), name="a.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nflows: 3\n")
    with Simulator(accept_unknown_flows=True) as sim:
        r = run("apply", str(a), str(bad), "--gateway", sim.url, "--yes", "--format", "json")
        doc = json.loads(r.out)
    assert r.code == 2
    assert [p["summary"] for p in doc["plans"]] == [{"triggered": 2}]
    assert "bad.yaml" in doc["error"]
    assert r.out.count("formatVersion") == 2  # one object (its plan has its own): no second error object


def test_finding_38_plan_reads_standard_input(tmp_path: Path) -> None:
    import subprocess
    import sys

    plan = write_plan(tmp_path, cron_flows(1, 3))
    led = tmp_path / "l.jsonl"
    led.write_text("")
    p = subprocess.run(
        [sys.executable, "-m", "planrunner", "plan", "-", "--ledger", str(led), "--format", "json"],
        input=plan.read_text(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["summary"] == {"pending": 3}
    # Without a ledger there is no path to find one by: said, not guessed.
    p = run_process(["plan", "-"])
    assert p.returncode == 2 and "give --ledger" in p.stderr, p.stderr


def test_finding_38_from_to_selects_a_time_window_and_every_output_shows_it(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 6))  # 00:00 .. 00:25 every 5 minutes
    window = ("--from", "2026-01-01T00:05:00Z", "--to", "2026-01-01T00:15")
    doc = json.loads(run("plan", str(plan), *window, "--format", "json").out)
    assert doc["summary"] == {"pending": 6}  # 00:05, 00:10, 00:15 of two flows
    assert doc["selection"]["from"] == 1767225900000 and doc["selection"]["to"] == 1767226500000
    assert "orphans" not in doc or not doc["orphans"]
    text = run("plan", str(plan), *window, "--flow", "f1").out
    assert "flows  --flow f1 --from 2026-01-01T00:05:00.000Z --to 2026-01-01T00:15:00.000Z" in text
    with Simulator(accept_unknown_flows=True) as sim:
        r, done = apply_json(run, plan, sim.url, *window, "--flow", "f1")
        assert r.code == 0, r.err
        assert sorted(t["triggerTime"] for t in sim.triggers()) == [
            1767225900000, 1767226200000, 1767226500000
        ]
        assert done["selection"]["flow"] == ["f1"] and done["selection"]["from"] == 1767225900000
        # The rest of the plan is still pending, not orphaned nor done.
        assert json.loads(run("plan", str(plan), "--format", "json").out)["summary"] == {
            "pending": 9, "done": 3
        }
        status = json.loads(
            run("status", str(plan), "--gateway", sim.url, *window, "--format", "json").out
        )
        assert sum(f["entries"] for f in status["flows"]) == 6
        assert status["selection"]["to"] == 1767226500000
        assert "--from 2026-01-01T00:05:00.000Z" in run(
            "status", str(plan), "--gateway", sim.url, *window
        ).out
    # A bare date as --to covers its day; a window that is empty is refused.
    doc = json.loads(run("plan", str(plan), "--to", "2026-01-01", "--format", "json").out)
    assert doc["summary"] == {"pending": 9, "done": 3}
    r = run("plan", str(plan), "--from", "2026-01-02", "--to", "2026-01-01")
    assert r.code == 2 and "window is empty" in r.err
    r = run("plan", str(plan), "--from", "yesterday")
    assert r.code == 2 and r.err.startswith("planrunner: error: --from:"), r.err


def test_finding_25_a_declined_confirmation_still_prints_its_json(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    with Simulator(accept_unknown_flows=True) as sim:
        code, out, screen = run_in_pty(
            ["apply", str(plan), "--gateway", sim.url, "--format", "json"], answer="n"
        )
        assert sim.triggers() == []
    assert code == 1, screen
    doc = json.loads(out)
    assert doc == {
        "formatVersion": 1,
        "error": "the confirmation was declined; nothing was sent",
        "exitCode": 1,
    }

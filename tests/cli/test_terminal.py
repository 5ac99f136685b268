"""What a person sees on a terminal (planrunner/terminal.py): the progress bar, colours, the
prompt, Ctrl-C, the --watch line; newcomer findings 1, 2, 5, 8, 11-13, 26, 27 and 42, run
through a pseudo-terminal."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from planrunner.sim import Faults, SimFlow, Simulator
from planrunner.terminal import Progress
from testing import FAST_ENV, ROOT, SIM_ENV, cron_flows, run_in_pty, run_process, write_plan
from testing.terminal import ANSI, in_pty, interrupt_once_sent, log_lines

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


# --- 1, 2, 27: the progress bar --------------------------------------------------------------


def test_finding_1_2_27_the_bar_counts_only_its_total_fits_the_width_and_shows_rate_and_eta() -> None:
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


def test_finding_1_2_on_a_60_column_terminal_the_bar_never_wraps_nor_passes_100(tmp_path: Path) -> None:
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


# --- 8, 26: the confirmation names scheme, host and port; "yes" is yes -----------------


def test_finding_8_26_the_prompt_names_the_port_and_yes_means_yes(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    with Simulator(accept_unknown_flows=True) as sim:
        code, _out, screen = run_in_pty(["apply", str(plan), "--gateway", sim.url], answer="yes")
        assert code == 0, screen
        assert f"to {sim.url} as user u1 in org o1" in screen
        assert len(sim.triggers()) == 2


# --- 27, 42: colour only on a terminal, never with NO_COLOR; short log lines ----------------


def test_finding_42_27_markers_are_coloured_on_a_terminal_and_not_with_no_color(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    piped = run_process(["plan", str(plan)])
    assert "\x1b[" not in piped.stdout
    with Simulator(accept_unknown_flows=True) as sim:
        code, _out, screen = run_in_pty(["apply", str(plan), "--gateway", sim.url, "--yes"], columns=100)
    assert code == 0
    log_lines = [ANSI.sub("", x) for x in screen.splitlines() if "planrunner:" in x]
    assert log_lines and all(len(x) < 100 for x in log_lines), log_lines
    assert not any(re.match(r"\d{4}-\d\d-\d\dT", x) for x in log_lines)


def test_finding_42_colour_on_a_terminal_for_plan_markers(tmp_path: Path) -> None:
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


def test_finding_13_ctrl_c_on_a_terminal_leaves_a_clean_line_and_says_how_to_continue(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(4, 50))
    with Simulator(faults=Faults(latency=0.02), accept_unknown_flows=True) as sim:
        argv = ["apply", str(plan), "--gateway", sim.url, "--yes"]  # what a person sees
        code, screen = in_pty(argv, interrupt_once_sent(sim, 20), stdin_tty=False)
    assert code == 130, screen
    # The bar's line is cleared before the message, so the two never share a line.
    assert "\r\x1b[Kplanrunner: interrupted; finishing requests in flight" in screen
    last = [line for line in ANSI.sub("", screen).splitlines() if line.strip()][-1]
    assert "the run was interrupted" in last and "planrunner apply" in last


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
        code, screen = in_pty(argv, react, stdin_tty=False)
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
        code, screen = in_pty(["apply", str(plan), "--gateway", sim.url], react)
        assert sim.triggers() == []
    assert code == 130, screen
    assert re.search(r"Proceed\? \[y/N\] \r?\nplanrunner: interrupted", screen), screen[-300:]


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
    polls = [x for x in log_lines(p.stderr) if x["event"] == "watching"]
    assert len(polls) >= 2, p.stderr
    for x in polls:
        counts = {k: v for k, v in x.items() if k.isupper()}
        assert x["watched"] == 3 == sum(counts.values()) and x["ended"] <= 3, x

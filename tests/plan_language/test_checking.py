"""How a plan's errors are worded (planrunner/checking.py): one error per mistake, the root
cause only, tabs and YAML hints (newcomer findings 10, 20, 21 and 36)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# --- 10, 20, 21, 36: messages ---------------------------------------------------------------


def _validate(tmp_path: Path, run: Any, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    r = run("validate", str(path))
    assert r.code == 2
    return [line.split(": error: ", 1)[1] for line in r.err.splitlines() if ": error: " in line]


HEAD = "version: 1\ntarget: {gateway: https://apigw.example.com, orgId: o1, userId: u}\n"


def test_finding_10_a_misspelt_zone_is_one_error_not_also_no_zone(tmp_path: Path, run: Any) -> None:
    errors = _validate(
        tmp_path,
        run,
        HEAD + 'flows:\n  - {name: a, flowId: 1, timezone: Europe/Berlim, at: ["2026-01-01 02:00"]}\n',
    )
    assert errors == ['flows[0].timezone: unknown time zone "Europe/Berlim" (did you mean "Europe/Berlin"?)']


def test_finding_20_tabs_are_named_as_tabs(tmp_path: Path, run: Any) -> None:
    errors = _validate(tmp_path, run, "version: 1\ntarget:\n\tgateway: x\n")
    assert len(errors) == 1 and "tab" in errors[0] and "use spaces" in errors[0]


def test_finding_21_the_root_cause_only(tmp_path: Path, run: Any) -> None:
    typo = HEAD + "timezone: UTC\nflows:\n  - name: a\n    flowId: 1\n    corn: '0 2 * * *'\n    from: 2026-01-01\n    to: 2026-01-02\n"
    assert _validate(tmp_path, run, typo) == ['flows[0]: unknown key "corn" (did you mean "cron"?)']
    both = HEAD + "timezone: UTC\nflows:\n  - {name: a, flowId: 1, at: [2026-01-01], cron: '0 * * * *'}\n"
    assert _validate(tmp_path, run, both) == ['flows[0]: needs exactly one of "at", "cron" or "dates"']


def test_finding_36_yaml_hints(tmp_path: Path, run: Any) -> None:
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

"""Every invalid-input class, as data files with their expected lines (STYLE habit 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testing import DATA

INVALID = sorted((DATA / "plans" / "invalid").glob("*.yaml"))
VALID = sorted((DATA / "plans" / "valid").glob("*.yaml"))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_plan_reports_each_problem_with_its_place(path: Path, run) -> None:
    expected = path.with_suffix(".expected").read_text().splitlines()
    rel = str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
    r = run("validate", "--now", "2026-06-01T00:00Z", rel)
    assert r.code == 2
    assert r.err.splitlines() == [f"{rel}:{line}" for line in expected]
    assert "Traceback" not in r.err


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_plan_passes(path: Path, run) -> None:
    r = run("validate", "--now", "2026-01-02T01:00Z", str(path))
    assert r.code == 0, r.err
    assert r.out.startswith(f"{path}: ok (")


def test_every_invalid_case_has_expectations() -> None:
    assert INVALID, "no invalid cases found"
    for path in INVALID:
        assert path.with_suffix(".expected").read_text().strip(), path


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\x02\xff\xfe binary",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"version: 1\ntarget: \x07bell\n",
        b"\xef\xbb\xbf",
        b"   \n\n# only a comment\n",
        b"[",
        b"{version: 1, target: {gateway: x, orgId: o, userId: u}, flows: 5}",
        b"version: !!python/object:os.system echo\n",
        b"version: 1\nflows: &f [*f]\n",
    ],
)
def test_hostile_bytes_give_a_located_error_not_a_traceback(
    tmp_path: Path, run, content: bytes
) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(content)
    r = run("validate", str(path))
    assert r.code == 2
    lines = r.err.splitlines()
    assert lines, "no error printed"
    assert all(line.startswith(f"{path}:") and ": error: " in line for line in lines), r.err


def test_unreadable_plan_is_a_usage_error(tmp_path: Path, run) -> None:
    r = run("validate", str(tmp_path / "missing.yaml"))
    assert r.code == 2
    assert "cannot read plan" in r.err


def test_validate_reports_every_file(tmp_path: Path, run) -> None:
    good = DATA / "plans" / "valid" / "now-window.yaml"
    bad = DATA / "plans" / "invalid" / "bad-cron.yaml"
    r = run("validate", str(good), str(bad))
    assert r.code == 2
    assert f"{good}: ok" in r.out
    assert "bad minute field" in r.err

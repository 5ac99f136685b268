"""Renderings of ``validate``: located problems as text, JSON, or GitHub Actions annotations.

Text: problems on stderr (``file:line:col: severity: path: message``), an ok line per valid
plan on stdout. JSON: one object on stdout. GitHub: workflow commands on stdout, so
problems show on the pull request's lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TextIO

from planrunner.checking import Located, PlanCheck
from planrunner.report import FORMAT_VERSION
from planrunner.report.plan import disabled_note


def ok_line(r: PlanCheck) -> str:
    """``path: ok (N entries in M flows; ...)``: what a valid plan yields."""
    warned = sum(1 for p in r.problems if p.severity == "warning")
    note = f"; {warned} warning{'s' if warned != 1 else ''}" if warned else ""
    flows = sum(1 for f in r.plan.flows if f.enabled) if r.plan is not None else 0
    disabled = disabled_note(r.plan) if r.plan is not None else ""
    return (
        f"{r.name}: ok ({len(r.entries):,} entr{'y' if len(r.entries) == 1 else 'ies'} in "
        f"{flows} flow{'s' if flows != 1 else ''}"
        f"{disabled}{note})"
    )


def _escape_data(text: str) -> str:
    # The runner unescapes these three in a command's message; a bare newline would end
    # the command and let the rest of the text start a command of its own.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_command(name: str, p: Located) -> str:
    """``::error file=F,line=L,col=C::message`` (``::warning`` for warnings)."""
    props = [f"file={_escape_property(name)}"]
    if p.line is not None:
        props += [f"line={p.line}", f"col={p.col}"]
    text = f"{p.path}: {p.message}" if p.path else p.message
    # Plan text (keys, values) is quoted into messages: keep it from forming "::".
    text = text.replace("::", ": :")
    return f"::{p.severity} {','.join(props)}::{_escape_data(text)}"


def write_text(results: Sequence[PlanCheck], out: TextIO, err: TextIO) -> None:
    """Every problem on ``err``, an ok line per valid plan on ``out``."""
    for r in results:
        for p in r.problems:
            err.write(p.text(r.name) + "\n")
        if r.ok:
            out.write(ok_line(r) + "\n")


def write_json(results: Sequence[PlanCheck], out: TextIO, err: TextIO) -> None:
    """One object: each plan's path, whether it is valid, and its problems."""
    doc = {
        "formatVersion": FORMAT_VERSION,
        "plans": [
            {"path": r.name, "ok": r.ok, "problems": [p.as_json() for p in r.problems]}
            for r in results
        ],
    }
    out.write(json.dumps(doc, ensure_ascii=False) + "\n")


def write_github(results: Sequence[PlanCheck], out: TextIO, err: TextIO) -> None:
    """A workflow command per problem, an ok line per valid plan, all on ``out``."""
    for r in results:
        for p in r.problems:
            out.write(github_command(r.name, p) + "\n")
        if r.ok:
            out.write(ok_line(r) + "\n")


# validate's renderers by --format: each writes to (stdout, stderr).
RENDERERS: dict[str, Callable[[Sequence[PlanCheck], TextIO, TextIO], None]] = {
    "text": write_text,
    "json": write_json,
    "github": write_github,
}

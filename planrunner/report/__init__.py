"""Every rendering planrunner prints: text, JSON and markdown of each command's result.

This module holds what the renderers share: the JSON ``formatVersion``, the markdown
helpers (escape, the comment marker CI finds a comment by, fitting under a comment's size
limit) and ``RENDERERS``, plan's and apply's renderers by ``--format``. Modules:

- :mod:`~planrunner.report.plan`: plan and apply (a reviewable diff, JSON, markdown);
- :mod:`~planrunner.report.validate`: validate;
- :mod:`~planrunner.report.ledger`: ``ledger log`` and ``ledger verify``.
"""

from __future__ import annotations

from collections.abc import Sequence

FORMAT_VERSION = 1  # of every JSON output; bumped only when a field changes meaning

MARKDOWN_LIMIT = 60_000  # characters: under GitHub's 65,536 for a comment, with room to spare
NOTE_ROOM = 200  # characters kept free in markdown for the notes on what was left out


def md_escape(text: str) -> str:
    """``text`` safe inside a markdown table cell or an HTML summary."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def markdown_marker(plan_path: str) -> str:
    """The first line of a plan's markdown: CI finds (and updates) its comment by it."""
    return f"<!-- planrunner:{plan_path.replace('--', '-&#45;')} -->"


def fit(lines: list[str], blocks: Sequence[str], limit: int, left_out: str) -> str:
    """``lines``, then as many of ``blocks`` as fit under ``limit`` (keeping ``NOTE_ROOM``),
    then ``left_out`` (a format string taking the count) if any block was left out."""
    used = sum(len(x) + 1 for x in lines)
    out = list(lines)
    shown = 0
    for block in blocks:
        if used + len(block) + 1 + NOTE_ROOM > limit:
            break
        out.append(block)
        used += len(block) + 1
        shown += 1
    if shown < len(blocks):
        out.append(left_out.format(len(blocks) - shown))
    return "\n".join(out)


# The renderers, importable from here (planrunner.report.render_json, ...); below the
# helpers above, which report.plan imports from this package.
from planrunner.report.plan import (  # noqa: E402
    COLOURS,
    FOLD_HEAD,
    FOLD_TAIL,
    JSON_CHUNK,
    MARKDOWN_FIXED_COLUMNS,
    PLAN_COLUMNS,
    RENDERERS,
    RESET,
    STATUS_ORDER,
    SYMBOLS,
    HiddenRun,
    PlanResult,
    PlanStatuses,
    Row,
    Style,
    disabled_note,
    gap_moved,
    orphan_lines,
    plan_statuses,
    render_json,
    render_markdown,
    render_text,
    schedule,
    write_json,
)

__all__ = [
    "COLOURS",
    "FOLD_HEAD",
    "FOLD_TAIL",
    "FORMAT_VERSION",
    "JSON_CHUNK",
    "MARKDOWN_FIXED_COLUMNS",
    "MARKDOWN_LIMIT",
    "NOTE_ROOM",
    "PLAN_COLUMNS",
    "RENDERERS",
    "RESET",
    "STATUS_ORDER",
    "SYMBOLS",
    "HiddenRun",
    "PlanResult",
    "PlanStatuses",
    "Row",
    "Style",
    "disabled_note",
    "fit",
    "gap_moved",
    "markdown_marker",
    "md_escape",
    "orphan_lines",
    "plan_statuses",
    "render_json",
    "render_markdown",
    "render_text",
    "schedule",
    "write_json",
]

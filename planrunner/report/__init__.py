"""Every rendering planrunner prints: text, JSON and markdown of each command's result.

``plan``: plan and apply (:mod:`planrunner.report.plan`).
"""

from __future__ import annotations

from planrunner.report.plan import (
    COLOURS,
    FOLD_HEAD,
    FOLD_TAIL,
    FORMAT_VERSION,
    JSON_CHUNK,
    MARKDOWN_FIXED_COLUMNS,
    MARKDOWN_LIMIT,
    NOTE_ROOM,
    PLAN_COLUMNS,
    RESET,
    STATUS_ORDER,
    SYMBOLS,
    Folded,
    Result,
    Row,
    disabled_note,
    gap_moved,
    markdown_marker,
    orphan_lines,
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
    "RESET",
    "STATUS_ORDER",
    "SYMBOLS",
    "Folded",
    "Result",
    "Row",
    "disabled_note",
    "gap_moved",
    "markdown_marker",
    "orphan_lines",
    "render_json",
    "render_markdown",
    "render_text",
    "schedule",
    "write_json",
]

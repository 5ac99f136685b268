"""What ``doctor`` shows: one line per check as text, or one JSON object (``formatVersion``)
that a bug report can carry. Foreign text in the checks was cleaned when they were made."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict

from planrunner.report import FORMAT_VERSION
from planrunner.runs.doctor import Findings


def render_text(f: Findings) -> str:
    """A header naming the gateway, api, org and user; a line per check; a verdict."""
    lines = [f"doctor {f.where} ({f.api}, org {f.org_id}, user {f.user_id})"]
    width = max((len(c.name) for c in f.checks), default=0)
    lines += [f"  {c.result:<8} {c.name:<{width}}  {c.detail}" for c in f.checks]
    lines.append("every assumption holds" if f.ok else "some assumptions do not hold")
    return "\n".join(lines) + "\n"


def render_json(f: Findings) -> str:
    """``{"formatVersion", "gateway", "api", "ok", "checks": [{"name", "result", "detail"}]}``."""
    doc = {
        "formatVersion": FORMAT_VERSION,
        "gateway": f.where,
        "api": f.api,
        "ok": f.ok,
        "checks": [asdict(c) for c in f.checks],
    }
    return json.dumps(doc, indent=1) + "\n"


# doctor's renderers by --format.
RENDERERS: dict[str, Callable[[Findings], str]] = {"text": render_text, "json": render_json}

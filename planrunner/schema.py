"""The packaged plan JSON Schema, and its errors as located, readable problems."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from planrunner.source import Path, Problem

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def text() -> str:
    """The schema as shipped inside the package."""
    return files("planrunner").joinpath("schemas/plan.schema.json").read_text("utf-8")


@cache
def schema() -> dict[str, Any]:
    """The parsed plan schema."""
    loaded: dict[str, Any] = json.loads(text())
    return loaded


def _is_integer(_checker: object, instance: object) -> bool:
    # JSON Schema counts 3.0 as an integer; a flowId or time written as a float is a mistake.
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def _validator() -> Any:
    base = jsonschema.Draft202012Validator
    extend: Any = jsonschema.validators.extend  # untyped in the stubs
    strict = extend(base, type_checker=base.TYPE_CHECKER.redefine("integer", _is_integer))
    return strict(schema())


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    for py, name in (
        (dict, "a mapping"),
        (list, "a list"),
        (str, "a string"),
        (int, "an integer"),
        (float, "a number"),
    ):
        if isinstance(value, py):
            return name
    return type(value).__name__  # pragma: no cover


def check(data: object) -> list[Problem]:
    """Every structural problem of ``data``, each with its path, root causes only.

    Follow-on problems are dropped: "missing gateway" beside "unknown key gatway (did you
    mean gateway?)", and the shape complaints ("needs exactly one of at or cron") about a
    mapping that has an unknown key, or that holds both alternatives.
    """
    problems: list[Problem] = []
    for error in _validator().iter_errors(data):
        problems.extend(_translate(error))
    suggested = {(p.path[:-1], p.subject) for p in problems if p.kind == "unknown-key"}
    with_unknown = {p.path[:-1] for p in problems if p.kind == "unknown-key"}
    both = {p.path for p in problems if p.kind == "shape" and p.subject == "both"}
    kept = []
    for p in problems:
        if p.kind == "missing-key" and (p.path, p.subject) in suggested:
            continue
        if p.kind == "shape" and p.path in with_unknown:
            continue
        if p.kind == "shape" and p.path in both and p.subject != "both":
            continue
        kept.append(p)
    return kept


_YAML11_BOOLEANS = {"yes": "true", "no": "false", "on": "true", "off": "false", "y": "true", "n": "false"}


def _hint(wanted: list[str], instance: object, path: Path) -> str:
    """A way to fix a type mistake that YAML makes easy."""
    if "boolean" in wanted and isinstance(instance, str):
        fixed = _YAML11_BOOLEANS.get(instance.lower())
        if fixed:
            return f'; "{instance}" is a string in YAML 1.2: write {fixed}'
    if "array" in wanted and isinstance(instance, str | int) and path and path[-1] == "at":
        return f"; a single time is still a list: write at: [{instance}]"
    if wanted == ["string"] and isinstance(instance, int | float) and not isinstance(instance, bool):
        return f'; quote it: "{instance}"'
    if wanted == ["string"] and isinstance(instance, bool):
        # A parameter value written `overwrite: true`: the service takes strings.
        return f'; quote it: "{str(instance).lower()}"'
    if "array" in wanted and "object" in wanted and path and path[-1] == "dates":
        return "; write dates: {from: DATE, to: DATE} or dates: [DATE, ...]"
    return ""


def _translate(error: ValidationError) -> Iterator[Problem]:
    path: Path = tuple(error.absolute_path)
    kind = error.validator
    sch: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    value: Any = error.validator_value
    instance: Any = error.instance
    custom = sch.get("errorMessage", {})
    if isinstance(custom, dict) and kind in custom:
        shape = kind in ("oneOf", "not")
        # The at/cron choice made twice: the root cause of the other shape complaints.
        both = (
            kind == "oneOf"
            and isinstance(instance, dict)
            and any("at" in alt.get("required", ()) for alt in value if isinstance(alt, dict))
            and sum(k in instance for k in ("at", "cron", "dates")) > 1
        )
        yield Problem(
            path, custom[kind], kind="shape" if shape else "", subject="both" if both else None
        )
        return
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(sch.get("properties", {}))
        patterns = sch.get("patternProperties", {})
        for key in instance:
            if key in allowed or any(p == "^x-" and key.startswith("x-") for p in patterns):
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = (
                f' (did you mean "{close[0]}"?)'
                if close
                else f" (expected one of: {', '.join(allowed)})"
            )
            yield Problem(
                (*path, key),
                f'unknown key "{key}"{hint}',
                key=True,
                kind="unknown-key",
                subject=close[0] if close else None,
            )
        return
    if kind == "required":
        missing = [k for k in value if k not in instance]
        for key in missing:
            yield Problem(path, f'missing required key "{key}"', kind="missing-key", subject=key)
        return
    if kind == "dependentRequired":
        for key, needs in value.items():
            if key in instance:
                for need in needs:
                    if need not in instance:
                        yield Problem(path, f'"{key}" needs "{need}"', kind="shape")
        return
    if kind == "type":
        wanted = value
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        expected = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        yield Problem(path, f"expected {expected}, got {_describe(instance)}{_hint(names, instance, path)}")
        return
    if kind == "const":
        yield Problem(path, f"must be {json.dumps(value)}, got {json.dumps(instance)}")
        return
    if kind in ("minItems", "minLength") and value == 1:
        yield Problem(path, "must not be empty")
        return
    if kind == "uniqueItems" and isinstance(instance, list):
        seen: set[str] = set()
        for j, item in enumerate(instance):
            text = json.dumps(item, ensure_ascii=False, sort_keys=True)
            if text in seen:
                yield Problem((*path, j), f"{text} is listed more than once")
            seen.add(text)
        return
    if kind == "minimum":
        yield Problem(path, f"must be at least {value}, got {instance}")
        return
    if kind == "maximum":
        yield Problem(path, f"must be at most {value}, got {instance}")
        return
    yield Problem(path, error.message)

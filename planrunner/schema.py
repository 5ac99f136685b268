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
def _validator() -> jsonschema.protocols.Validator:
    base = jsonschema.Draft202012Validator
    strict = jsonschema.validators.extend(
        base, type_checker=base.TYPE_CHECKER.redefine("integer", _is_integer)
    )
    return strict(schema())  # type: ignore[no-any-return]


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    for py, name in ((dict, "a mapping"), (list, "a list"), (str, "a string"), (int, "an integer"), (float, "a number")):
        if isinstance(value, py):
            return name
    return type(value).__name__  # pragma: no cover


def check(data: object) -> list[Problem]:
    """Every structural problem of ``data``, each with its path."""
    problems: list[Problem] = []
    for error in _validator().iter_errors(data):
        problems.extend(_translate(error))
    return problems


def _translate(error: ValidationError) -> Iterator[Problem]:
    path: Path = tuple(error.absolute_path)
    kind = error.validator
    custom = error.schema.get("errorMessage", {}) if isinstance(error.schema, dict) else {}
    if isinstance(custom, dict) and kind in custom:
        yield Problem(path, custom[kind])
        return
    instance = error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        patterns = error.schema.get("patternProperties", {})
        for key in instance:
            if key in allowed or any(p == "^x-" and key.startswith("x-") for p in patterns):
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (expected one of: {', '.join(allowed)})"
            yield Problem((*path, key), f'unknown key "{key}"{hint}', key=True)
        return
    if kind == "required":
        missing = [k for k in error.validator_value if k not in instance]
        for key in missing:
            yield Problem(path, f'missing required key "{key}"')
        return
    if kind == "dependentRequired":
        for key, needs in error.validator_value.items():
            if key in instance:
                for need in needs:
                    if need not in instance:
                        yield Problem(path, f'"{key}" needs "{need}"')
        return
    if kind == "type":
        wanted = error.validator_value
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        expected = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        yield Problem(path, f"expected {expected}, got {_describe(instance)}")
        return
    if kind == "const":
        yield Problem(path, f"must be {json.dumps(error.validator_value)}, got {json.dumps(instance)}")
        return
    if kind in ("minItems", "minLength") and error.validator_value == 1:
        yield Problem(path, "must not be empty")
        return
    if kind == "minimum":
        yield Problem(path, f"must be at least {error.validator_value}, got {instance}")
        return
    if kind == "maximum":
        yield Problem(path, f"must be at most {error.validator_value}, got {instance}")
        return
    yield Problem(path, error.message)

"""The packaged schema: valid 2020-12, published copy identical, `planrunner schema`."""

from __future__ import annotations

import json

import jsonschema

from planrunner import schema
from testing import ROOT


def test_schema_is_valid_against_its_metaschema() -> None:
    loaded = schema.schema()
    assert loaded["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert loaded["$id"]
    jsonschema.Draft202012Validator.check_schema(loaded)


def test_published_schema_is_the_packaged_one() -> None:
    assert (ROOT / "schemas" / "plan.schema.json").read_text() == schema.text()


def test_schema_command_prints_it(run) -> None:
    r = run("schema")
    assert r.code == 0
    assert json.loads(r.out) == schema.schema()


def test_float_is_not_an_integer() -> None:
    data = {
        "version": 1,
        "target": {"gateway": "https://g", "orgId": "o", "userId": "u"},
        "flows": [{"name": "a", "flowId": 3.0, "at": [1767225600000]}],
    }
    problems = schema.check(data)
    assert [(p.path, p.message) for p in problems] == [
        (("flows", 0, "flowId"), "expected an integer, got a number")
    ]


def test_example_plans_are_valid_against_the_schema() -> None:
    from planrunner import source

    plans = [p for p in (ROOT / "plans").glob("*.yaml") if p.name != "sim-flows.yaml"]
    assert plans
    for path in plans:
        data = source.load(path.read_bytes()).data
        assert isinstance(data, dict)
        assert schema.check({k: v for k, v in data.items() if not k.startswith("x-")}) == [], path

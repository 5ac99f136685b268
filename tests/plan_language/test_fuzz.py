"""Fuzzing plans: every input ends in a documented exit code with a located message, never a
traceback (exit 70), never a hang.

Plans are mutated structurally (types swapped, keys dropped or added, unicode, huge and
negative numbers, deep nesting, alias bombs, binary bytes, BOMs, CRLF, tabs, tags) and fed to
``validate`` and ``plan`` in-process; damaged ledgers are tests/ledger/test_fuzz.py's.
``FUZZ_EXAMPLES`` sets the number of examples per property (default 200). Time per input is
bounded by hypothesis' deadline; memory by the inputs' size (under 1 MB). Failing examples
found while writing this are kept as ``@example`` regression cases.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from testing.fuzz import FUZZ, _run, values

LOCATED = re.compile(r"^(?:.+?:\d+:\d+: (?:error|warning): |planrunner: error: )", re.M)

BASE: dict[str, Any] = {
    "version": 1,
    "target": {"gateway": "https://apigw.example.com", "orgId": "o1", "userId": "u1"},
    "timezone": "UTC",
    "flows": [
        {
            "name": "daily",
            "flowId": 7,
            "cron": "0 2 * * *",
            "from": "2026-01-01",
            "to": "2026-01-05",
        },
        {"name": "once", "flowId": 8, "at": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]},
    ],
}


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


@st.composite
def mutated_plans(draw: st.DrawFn) -> dict[str, Any]:
    """The base plan with a few structural mutations: replace, drop or add at any path."""
    doc = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        parent: Any = doc
        for p in path[:-1]:
            parent = parent[p]
        if not path:
            if action == "replace":
                doc = draw(values)
            continue
        last = path[-1]
        if action == "replace":
            parent[last] = draw(values)
        elif action == "drop":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
        else:
            parent.append(draw(values))
        if not isinstance(doc, dict | list):
            break
    return doc  # type: ignore[no-any-return]


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, default_flow_style=None)


@st.composite
def plan_bytes(draw: st.DrawFn) -> bytes:
    """A mutated plan as YAML text, then damaged at the byte level some of the time."""
    text = _dump(draw(mutated_plans()))
    trick = draw(
        st.sampled_from(
            [
                "none",
                "bom",
                "crlf",
                "tabs",
                "tag",
                "deep",
                "alias-bomb",
                "binary",
                "cut",
                "splice",
                "unicode",
                "bignum",
            ]
        )
    )
    if trick == "bom":
        text = "\ufeff" + text
    elif trick == "crlf":
        text = text.replace("\n", "\r\n")
    elif trick == "tabs":
        text = text.replace("  ", "\t", draw(st.integers(1, 3)))
    elif trick == "tag":
        tag = draw(
            st.sampled_from(
                [
                    "!!python/object/apply:os.system",
                    "!!binary",
                    "!custom",
                    "!!set",
                    "!!omap",
                    "!<tag:x>",
                    "!!str",
                    "!!int",
                ]
            )
        )
        lines = text.splitlines()
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if ": " in lines[i]:
            lines[i] = lines[i].replace(": ", f": {tag} ", 1)
        text = "\n".join(lines) + "\n"
    elif trick == "deep":
        d = draw(st.integers(50, 3000))
        open_, close = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        text += "x-deep: " + open_ * d + ("1" if open_ != "[" else "") + close * d + "\n"
    elif trick == "alias-bomb":
        levels = draw(st.integers(2, 12))
        text += 'x-0: &a0 ["lol"]\n' + "".join(
            f"x-{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, levels)
        )
    data = text.encode("utf-8", errors="surrogatepass")
    if trick == "binary":
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(min_size=1, max_size=16)) + data[pos:]
    elif trick == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif trick == "splice":
        a, b = sorted((draw(st.integers(0, len(data))), draw(st.integers(0, len(data)))))
        data = data[:a] + data[b:] + data[a:b]
    elif trick == "unicode":
        pos = draw(st.integers(0, len(data)))
        data = (
            data[:pos]
            + draw(st.text(min_size=1, max_size=8)).encode("utf-8", "surrogatepass")
            + data[pos:]
        )
    elif trick == "bignum":
        data = data.replace(
            b"flowId: 7",
            b"flowId: " + str(draw(st.sampled_from([-1, 0, 2**63, 10**400, -(10**30)]))).encode(),
        )
    return data


def _check_result(code: int, out: str, err: str) -> None:
    assert code in (0, 2, 3), (code, err[-3000:])
    assert "Traceback" not in err and "internal error" not in err, err[-3000:]
    if code != 0:
        # Every problem is a located line: file:line:col for plans, "planrunner: error:" else.
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines, "an error with no message"
        assert all(LOCATED.match(line) for line in lines), err[-3000:]
    assert len(err) < 200_000


@FUZZ
@given(data=plan_bytes())
@example(data=b"\xef\xbb\xbf")
@example(data=b"version: 1\nx-deep: " + b"[" * 600 + b"]" * 600 + b"\n")  # D10
@example(
    data=b"version: 1\ntarget: !!python/object:subprocess.Popen {gateway: x}\nflows: []\n"
)  # D14
@example(data=b"version: 1\r\ntarget:\r\n\tgateway: x\r\n")
@example(data=b"version: 1\nflows: !!set {a}\n")
@example(data=b"- &a [*a]\n")
@example(data=_dump({**BASE, "timezone": " "}).encode())  # found by this fuzzer: exit 70
@example(
    data=_dump({**BASE, "\x1e": None}).encode()
)  # found by this fuzzer: a raw control character in a message
@example(data=b"{? '' : !!int null}\n")  # found by this fuzzer: ValueError, exit 70
@example(
    data=_dump(BASE).encode()
    + b'x-0: &a0 ["lol"]\n'
    + b"".join(f"x-{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n".encode() for i in range(1, 7))
)  # found: 35 s
@example(
    data=b"version: 1\ntarget: {gateway: 'http://evil.example\\\\@127.0.0.1:8080', orgId: o1, userId: u1}\nflows: []\n"
)  # D1
def test_fuzzed_plans_end_in_a_documented_exit_code(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    d = tmp_path_factory.mktemp("fuzz")
    path = d / "p.yaml"
    path.write_bytes(data)
    for command in ("validate", "plan"):
        extra = (
            ["--ledger", str(d / "l.jsonl"), "--now", "2026-06-01T00:00:00Z"]
            if command == "plan"
            else []
        )
        _check_result(*_run(capsys, command, str(path), *extra))

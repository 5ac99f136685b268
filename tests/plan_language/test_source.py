"""The YAML reader: positions, duplicate keys, implicit typing, aliases, bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from planrunner import source
from testing import write_plan
from testing.hostile import ONE


def test_positions_of_values_and_keys() -> None:
    doc = source.load("a:\n  b: [1, 2]\n  c: x\n")
    assert doc.values[("a", "b", 1)] == source.Mark(2, 10)
    assert doc.keys[("a", "c")] == source.Mark(3, 3)
    assert doc.values[("a", "c")] == source.Mark(3, 6)


def test_format_path() -> None:
    assert source.format_path(("flows", 1, "cron")) == "flows[1].cron"
    assert source.format_path(()) == ""


def test_timestamps_stay_strings_so_quoting_does_not_change_meaning() -> None:
    doc = source.load('a: 2026-01-01\nb: "2026-01-01"\nc: 2026-01-01 06:00:00\n')
    assert doc.data == {"a": "2026-01-01", "b": "2026-01-01", "c": "2026-01-01 06:00:00"}


def test_only_true_and_false_are_booleans() -> None:
    doc = source.load("a: off\nb: yes\nc: true\nd: False\n")
    assert doc.data == {"a": "off", "b": "yes", "c": True, "d": False}


def test_duplicate_keys_are_collected_with_both_lines() -> None:
    doc = source.load("a: 1\nb: 2\na: 3\nb: 4\n")
    messages = [(p.mark, p.message) for p in doc.problems]
    assert messages == [
        (source.Mark(3, 1), 'duplicate key "a" (first at line 1)'),
        (source.Mark(4, 1), 'duplicate key "b" (first at line 2)'),
    ]


def test_merge_keys_explicit_keys_win_and_earlier_sources_win() -> None:
    doc = source.load("x: &x {a: 1, b: 1}\ny: &y {b: 2, c: 2}\nz:\n  <<: [*x, *y]\n  c: 3\n")
    assert doc.data["z"] == {"a": 1, "b": 1, "c": 3}  # type: ignore[index]


def test_alias_bomb_is_refused_before_expansion() -> None:
    levels = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 12):
        levels.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    with pytest.raises(source.SourceError, match="aliases expand"):
        source.load("\n".join(levels))


def test_small_alias_reuse_is_fine() -> None:
    doc = source.load("a: &a [1, 2]\nb: [*a, *a]\n")
    assert doc.data == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(source.SourceError, match="contains it"):
        source.load("a: &a [1, *a]\n")


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(source.SourceError):
        source.load("a: " + "[" * 5000 + "]" * 5000)


def test_unsupported_tags_are_refused() -> None:
    with pytest.raises(source.SourceError, match="unsupported tag"):
        source.load("a: !!binary aGVsbG8=\n")


def test_huge_integers_load_exactly() -> None:
    assert source.load("a: 100000000000000000000000000000\n").data == {"a": 10**29}


@pytest.mark.parametrize("depth", [500, 600, 800, 990, 5000])
@pytest.mark.parametrize("style", ["[", "{a: "])
def test_d10_deep_yaml_is_a_located_error_not_a_crash(
    tmp_path: Path, run, depth: int, style: str
) -> None:
    close = "]" if style == "[" else "}"
    path = tmp_path / "deep.yaml"
    path.write_text(
        "version: 1\nx-deep: " + style * depth + "1" * (style != "[") + close * depth + "\n"
    )
    for command in ("validate", "plan"):
        r = run(command, str(path))
        assert r.code == 2, r.err
        assert f"{path}:2:" in r.err and "deeper than" in r.err


def test_d10_aliases_cannot_nest_past_the_limit(tmp_path: Path, run) -> None:
    # Each level is 30 deep as written; through the aliases the last one nests 240 deep.
    lines = ["version: 1", "x-0: &a0 " + "[" * 30 + "1" + "]" * 30]
    for i in range(1, 8):
        lines.append(f"x-{i}: &a{i} " + "[" * 30 + f"*a{i - 1}" + "]" * 30)
    path = tmp_path / "deep-alias.yaml"
    path.write_text("\n".join(lines) + "\n")
    r = run("validate", str(path))
    assert r.code == 2 and "deeper than" in r.err, r.err


@pytest.mark.parametrize(
    "text",
    [
        'version: 1\ntarget: !!python/object:subprocess.Popen {gateway: "https://gw.example.com", orgId: o1, userId: u1}\n'
        'flows:\n  - {name: a, flowId: 1, at: ["2026-01-01T00:00:00Z"]}\n',
        'version: 1\ntarget: {gateway: "https://gw.example.com", orgId: o1, userId: u1}\n'
        'flows: !!python/object/apply:os.system\n  - {name: a, flowId: 1, at: ["2026-01-01T00:00:00Z"]}\n',
        'version: 1\nx-a: !!python/object/apply:os.system ["true"]\ntarget: {gateway: "https://gw.example.com", orgId: o1, userId: u1}\n'
        'flows:\n  - {name: a, flowId: 1, at: ["2026-01-01T00:00:00Z"]}\n',
        'version: 1\ntarget: !custom {gateway: "https://gw.example.com", orgId: o1, userId: u1}\n'
        "flows:\n  - !!set {a}\n",
    ],
)
def test_d14_tags_on_sequences_and_mappings_are_refused(tmp_path: Path, run, text: str) -> None:
    path = tmp_path / "t7.yaml"
    path.write_text(text)
    r = run("validate", str(path))
    assert r.code == 2, r.out
    assert "unsupported tag" in r.err


def test_d19_a_plain_document_past_the_node_limit_says_which_limit(
    tmp_path: Path, run, monkeypatch
) -> None:
    monkeypatch.setattr(source, "MAX_NODES", 1000)
    path = write_plan(
        tmp_path, "  - {name: a, flowId: 1, at: [" + ", ".join(["1767225600"] * 2000) + "]}\n"
    )
    r = run("validate", str(path))
    assert r.code == 2
    assert "more than 1,000 nodes" in r.err and "node limit" in r.err
    assert "alias" not in r.err


@pytest.mark.parametrize("where", ["gateway", "name", "cron"])
def test_d19_a_huge_value_is_not_echoed(tmp_path: Path, run, where: str) -> None:
    big = "A" * 5_000_000
    flows = {
        "gateway": ONE,
        "name": f'  - {{name: "{big}", flowId: 1, at: ["2026-01-01T00:00:00Z"]}}\n',
        "cron": f'  - {{name: a, flowId: 1, cron: "{big}", from: 2026-01-01, count: 1}}\n',
    }[where]
    plan = write_plan(
        tmp_path, flows, gateway=f"ftp://{big}" if where == "gateway" else "https://gw.example.com"
    )
    r = run("validate", str(plan))
    assert r.code == 2
    assert len(r.err) < 4000, len(r.err)


def test_d19_a_file_past_the_size_limit_says_which_limit(tmp_path: Path, run) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:
        f.truncate(64 * 1024 * 1024 + 10)
    r = run("validate", str(path))
    assert r.code == 2 and "64 MiB" in r.err

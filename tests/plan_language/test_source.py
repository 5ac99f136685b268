"""The YAML reader: positions, duplicate keys, implicit typing, aliases, bounds."""

from __future__ import annotations

import pytest

from planrunner import source


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

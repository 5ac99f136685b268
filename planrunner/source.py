"""Reading plan YAML: the one place YAML is parsed.

The document is composed into PyYAML's node tree (safe, one document) and converted by
hand, so that every value keeps its line and column, duplicate keys are caught, implicit
timestamps stay the strings they were written as, and alias expansion is bounded before
anything is expanded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_constructor = yaml.constructor.SafeConstructor()

# A plan with a 100k-entry `at` list is about 100k nodes; a billion-laughs file is 10^9.
MAX_NODES = 2_000_000
# A plan is about 5 levels deep; deeper documents are refused before they are built, so
# nothing recurses past Python's stack.
MAX_DEPTH = 100
MAX_MESSAGE = 1000  # characters of a problem message shown (a value may be 50 MB)

PathItem = str | int
Path = tuple[PathItem, ...]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"


@dataclass(frozen=True, slots=True)
class Mark:
    """A 1-based line and column."""

    line: int
    col: int


class SourceError(Exception):
    """The file is not a loadable YAML plan; carries where."""

    def __init__(self, message: str, mark: Mark = Mark(1, 1)) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


@dataclass(frozen=True, slots=True)
class Document:
    """Plain data plus where each value (and each mapping key) starts."""

    data: object
    values: dict[Path, Mark]
    keys: dict[Path, Mark]
    problems: list[Problem]

    def locate(self, path: Path, *, key: bool = False) -> Mark:
        """Where ``path`` starts; falls back to the nearest enclosing node."""
        table = self.keys if key else self.values
        while path:
            if path in table:
                return table[path]
            if key:
                table = self.values
            path = path[:-1]
        return self.values.get((), Mark(1, 1))


def format_path(path: Path) -> str:
    """``("flows", 1, "cron")`` -> ``flows[1].cron``."""
    out: list[str] = []
    for item in path:
        if isinstance(item, int):
            out.append(f"[{item}]")
        else:
            out.append(f".{item}" if out else item)
    return "".join(out)


def _mark(node: yaml.Node | yaml.Event) -> Mark:
    m = node.start_mark
    return Mark(m.line + 1, m.column + 1) if m is not None else Mark(1, 1)


def load(text: bytes | str) -> Document:
    """Parse one YAML document into a :class:`Document`, or raise :class:`SourceError`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SourceError(f"not UTF-8 text (bad byte at offset {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    loader = _Loader(text)
    try:
        _check_events(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "malformed YAML"
        started = _unclosed(e)
        if started is not None:
            # The end of the file is no help: point at where the quote or bracket opened.
            mark, problem = e.context_mark, started
        where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
        if mark is not None and _tab_at(text, mark.line, mark.column):
            problem = "a tab character; YAML does not allow tabs for indentation: use spaces"
        if "expected a single document" in str(e):
            problem = "only one YAML document per plan file (found a second '---')"
        if "nesting depth" in str(problem):
            # Newer PyYAML stops deep nesting itself, before our own event pass does.
            problem = f"nested deeper than {MAX_DEPTH} levels (the nesting limit); refusing it"
        raise SourceError(f"YAML: {_cut(str(problem))}", where) from None
    except yaml.YAMLError as e:
        raise SourceError(f"YAML: {_cut(str(e).splitlines()[0])}") from None
    except RecursionError:
        raise SourceError("YAML: nesting too deep") from None
    finally:
        loader.dispose()
    if node is None:
        raise SourceError("empty plan file (expected a mapping with version, target, flows)")
    _check_size(node)
    builder = _Builder()
    data = builder.build(node, ())
    return Document(data, builder.values, builder.keys, builder.problems)


def _unclosed(e: yaml.MarkedYAMLError) -> str | None:
    """"unclosed quote started here" (or bracket) when YAML ran off the end of one."""
    context, problem = e.context or "", e.problem or ""
    if e.context_mark is None:
        return None
    if "scanning a quoted scalar" in context and "end of stream" in problem:
        return "unclosed quote started here"
    for kind, closing in (("flow mapping", "}"), ("flow sequence", "]")):
        if f"parsing a {kind}" in context and f"'{closing}'" in problem:
            return f'unclosed "{"{" if closing == "}" else "["}" started here (no "{closing}" closes it)'
    return None


def _tab_at(text: str, line: int, column: int) -> bool:
    """Whether the (0-based) line holds a tab at or before ``column``."""
    lines = text.splitlines()
    return 0 <= line < len(lines) and "\t" in lines[line][: column + 1]


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _cut(message: str) -> str:
    """A message made safe for one output line: control characters (which a plan's values
    may hold) escaped, and cut to MAX_MESSAGE characters (values can be huge)."""
    if len(message) > MAX_MESSAGE:
        message = f"{message[: MAX_MESSAGE - 40]}… ({len(message):,} characters in all)"
    message = message.replace("\n", "\\n").replace("\t", "\\t")
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 256 else f"\\u{ord(m[0]):04x}", message
    )


def _check_events(text: str) -> None:
    """Refuse, from the event stream (constant memory, no recursion), a document of more
    than MAX_NODES nodes as written or nested deeper than MAX_DEPTH."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            nodes += 1
            depth += 1
            if depth > MAX_DEPTH:
                raise SourceError(
                    f"YAML: nested deeper than {MAX_DEPTH} levels (the nesting limit); refusing it",
                    _mark(event),
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
            nodes += 1
        else:
            continue
        if nodes > MAX_NODES:
            raise SourceError(
                f"YAML: more than {MAX_NODES:,} nodes (values, lists and mappings; the node "
                "limit); refusing it: split the plan",
                _mark(event),
            )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_size(root: yaml.Node) -> None:
    """Refuse documents whose aliases expand past MAX_NODES or MAX_DEPTH, and recursive
    aliases. Iterative: a deep document cannot exhaust the stack here."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        ident = id(node)
        if finished:
            kids = [sizes[id(c)] for c in _children(node)]
            total = 1 + sum(k[0] for k in kids)
            height = 1 + max((k[1] for k in kids), default=0)
            active.discard(ident)
            if total > MAX_NODES:
                raise SourceError(
                    f"YAML: aliases expand this document past {MAX_NODES:,} nodes; refusing it",
                    _mark(node),
                )
            if height > MAX_DEPTH:
                raise SourceError(
                    f"YAML: aliases nest this document deeper than {MAX_DEPTH} levels (the "
                    "nesting limit); refusing it",
                    _mark(node),
                )
            sizes[ident] = (total, height)
            continue
        if ident in sizes:
            continue
        if ident in active:
            raise SourceError("YAML: an alias refers to a node that contains it", _mark(node))
        active.add(ident)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


_PLAIN_TAGS = frozenset({_STR, _TIMESTAMP, _INT, _FLOAT, _BOOL, _NULL, _MERGE, _SEQ, _MAP})


def _check_tags(root: yaml.Node) -> None:
    """Refuse any tag but the plain ones anywhere under ``root`` (each node visited once)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.tag not in _PLAIN_TAGS:
            raise SourceError(f"YAML: unsupported tag {_cut(node.tag)}", _mark(node))
        stack.extend(_children(node))


class _Builder:
    def __init__(self) -> None:
        self.values: dict[Path, Mark] = {}
        self.keys: dict[Path, Mark] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: Path) -> object:
        self.values[path] = _mark(node)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise SourceError(f"YAML: unsupported tag {_cut(node.tag)}", _mark(node))
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                raise SourceError(f"YAML: unsupported tag {_cut(node.tag)}", _mark(node))
            return self._mapping(node, path)
        raise SourceError("YAML: unsupported node", _mark(node))  # pragma: no cover

    def _scalar(self, node: yaml.ScalarNode) -> object:
        tag = node.tag
        if tag in (_STR, _TIMESTAMP):
            # Times are parsed by planrunner, never by YAML's timestamp resolver, so that
            # `2026-01-01` quoted and unquoted mean the same thing.
            return node.value
        if tag in (_INT, _FLOAT) and ":" in node.value and not node.style:
            # YAML 1.1 reads `time: 12:30` as the base-60 integer 750; YAML 1.2, and every
            # reader of a plan, sees a time of day.
            return node.value
        if tag in (_INT, _FLOAT):
            try:
                if tag == _INT:
                    return _constructor.construct_yaml_int(node)
                return _constructor.construct_yaml_float(node)
            except ValueError:
                # An explicit !!int or !!float on text that is not one.
                kind = "an integer" if tag == _INT else "a number"
                raise SourceError(
                    f'YAML: "{_cut(node.value[:40])}" is tagged as {kind} but is not one',
                    _mark(node),
                ) from None
        if tag == _BOOL:
            # YAML 1.2: only true/false are booleans; `name: off` or `no` stays a string.
            if node.value.lower() in ("true", "false"):
                return node.value.lower() == "true"
            return node.value
        if tag == _NULL:
            return None
        raise SourceError(f"YAML: unsupported tag {_cut(tag)}", _mark(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, object]:
        merged: dict[str, object] = {}
        explicit: dict[str, object] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                for source in self._merge_sources(value_node):
                    # Earlier merge sources win over later ones; explicit keys win over all.
                    for k, v in self._mapping(source, path).items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise SourceError("YAML: mapping keys must be plain strings", _mark(key_node))
            key = str(key_node.value)
            if key in explicit:
                first = self.keys[(*path, key)]
                self.problems.append(
                    Problem(
                        (*path, key),
                        f'duplicate key "{key}" (first at line {first.line})',
                        key=True,
                        mark=_mark(key_node),
                    )
                )
                continue
            self.keys[(*path, key)] = _mark(key_node)
            if not path and key.startswith("x-"):
                # Top-level x- keys hold anchored fragments that nothing reads: their tags
                # are checked, but they are not expanded (an alias fan-out would cost time).
                _check_tags(value_node)
                explicit[key] = None
                continue
            explicit[key] = self.build(value_node, (*path, key))
        merged.update(explicit)
        return merged

    def _merge_sources(self, node: yaml.Node) -> list[yaml.MappingNode]:
        if isinstance(node, yaml.MappingNode):
            return [node]
        if isinstance(node, yaml.SequenceNode) and all(
            isinstance(n, yaml.MappingNode) for n in node.value
        ):
            return list(node.value)
        raise SourceError("YAML: a merge key (<<) takes a mapping or a list of them", _mark(node))


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem at ``path``; ``key`` points at a mapping key, not its value."""

    path: Path
    message: str
    key: bool = False
    mark: Mark | None = None  # when the path alone cannot say where (a duplicate key)
    kind: str = ""  # "unknown-key", "missing-key", "shape": lets the checker drop follow-ons
    subject: str | None = None  # the key an unknown-key problem suggests, or a missing key
    severity: str = "error"  # "error" or "warning"

    def __post_init__(self) -> None:
        # Messages quote the plan's values: one line each, never a 50 MB echo.
        object.__setattr__(self, "message", _cut(self.message))

"""The shape of the code: imports point one way, light modules stay light, bugs exit 70."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from testing import ROOT, run_process

PACKAGE = ROOT / "planrunner"

# Layers, lowest first. A module may import its own layer or lower ones, never higher.
LAYERS = [
    {"errors", "protocol", "outcome", "times", "log", "select"},
    {"source", "cron", "schema"},
    {"plan"},
    {"resolve", "ledger", "enos", "terminal", "rate", "transport", "lookup", "credentials",
     "answers", "sim"},
    {"checking"},
    {"runs"},
    {"report"},
    {"commands", "saved"},
    {"cli", "__main__", "launch"},
]
# Inside planrunner/ledger/, lowest first: the record format, the fold, the interfaces, the
# backends, then the registry and the tools. The base never imports a backend.
LEDGER_LAYERS = [{"records"}, {"fold"}, {"base", "lock", "pgsql"}, {"file", "postgres"}, {"__init__", "tools"}]


def test_ledger_modules_import_one_way() -> None:
    def rank(module: str) -> int:
        part = module.removeprefix("planrunner.ledger").lstrip(".") or "__init__"
        return next(i for i, names in enumerate(LEDGER_LAYERS) if part in names)

    wrong = [
        f"{path.stem} imports {target}"
        for path in sorted((PACKAGE / "ledger").glob("*.py"))
        for target in imports_of(path)
        if target.startswith("planrunner.ledger")
        and rank(target) > rank(f"planrunner.ledger.{path.stem}")
    ]
    assert not wrong, wrong


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.startswith("planrunner.") else module
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"planrunner.{top} has no layer in tests/test_architecture.py")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("planrunner"):
            if node.module == "planrunner":
                found |= {f"planrunner.{a.name}" for a in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("planrunner.")}
        elif (  # importlib.import_module("planrunner.x") and __import__("planrunner.x")
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.startswith("planrunner.")
        ):
            found.add(node.args[0].value)

    def is_module(name: str) -> bool:
        rel = Path(*name.split(".")[1:])
        return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel).is_dir()

    return {m for m in found if m != "planrunner" and is_module(m)}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts)


def test_imports_point_one_way() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name == "planrunner.__init__":
            continue
        mine = layer_of(name)
        for target in imports_of(path):
            if target.startswith(name.rsplit(".", 1)[0] + ".") and name.count(".") > 1:
                continue  # within one package (planrunner.sim.*, planrunner.commands.*)
            if layer_of(target) > mine:
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("planrunner.enos", "planrunner.plan"),  # the client does not load the plan loader
        ("planrunner.sim", "planrunner.enos"),  # the simulator does not use the client
        ("planrunner.ledger", "planrunner.report"),  # the store does not know the report layer
        ("planrunner.runs.apply", "planrunner.commands"),
    ],
)
def test_named_directions(module: str, forbidden: str) -> None:
    code = (
        f"import sys, {module}; "
        f"print(sorted(m for m in sys.modules if m == {forbidden!r} or m.startswith({forbidden!r} + '.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    "module", ["planrunner.ledger", "planrunner.enos", "planrunner.protocol", "planrunner.runs.apply"]
)
def test_ledger_and_client_do_not_load_yaml_or_jsonschema(module: str) -> None:
    code = f"import sys, {module}; print([m for m in ('yaml', 'jsonschema') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_simulator_imports_only_protocol_source_and_errors() -> None:
    # The simulator is the service's stand-in: it never loads the CLI, the client or the engine.
    allowed = {"planrunner.protocol", "planrunner.source", "planrunner.errors"}
    used = {
        target
        for path in sorted((PACKAGE / "sim").glob("*.py"))
        for target in imports_of(path)
        if not target.startswith("planrunner.sim")
    }
    assert used <= allowed, sorted(used - allowed)


def test_protocol_is_standard_library_only() -> None:
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    tree = ast.parse((PACKAGE / "protocol.py").read_text())
    used = {
        name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for name in ([a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""])
    }
    assert used <= allowed, used - allowed


def test_a_bug_exits_70_with_one_line_and_a_traceback_only_with_v(tmp_path: Path) -> None:
    # A command whose code raises what no handler expects: the last resort catches it.
    code = (
        "import sys; from planrunner import cli; import planrunner.commands.schema as s; "
        "s.main = lambda args: 1 / 0; sys.exit(cli.main(sys.argv[1:]))"
    )
    quiet = subprocess.run([sys.executable, "-c", code, "schema"], capture_output=True, text=True, check=False)
    assert quiet.returncode == 70
    assert "internal error (a bug): ZeroDivisionError: division by zero" in quiet.stderr
    assert len(quiet.stderr.strip().splitlines()) == 2
    assert "Traceback" not in quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code, "schema", "-v"], capture_output=True, text=True, check=False)
    assert loud.returncode == 70 and "Traceback" in loud.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sim", "--port", "70000"], "must be 0-65535"),
        (["apply", "plans/example.yaml", "--lock-timeout", "-1"], "must be a number >= 0"),
        (["sim", "--latency", "-0.5"], "latency"),
    ],
)
def test_options_are_range_checked(argv: list[str], message: str) -> None:
    p = run_process(argv, timeout=30)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr


def test_lock_timeout_zero_in_any_spelling() -> None:
    from planrunner.commands.options import non_negative_float

    assert non_negative_float("0.0") == 0.0 == non_negative_float("0")


def test_string_imports_are_seen() -> None:
    # A module loaded by name is an import like any other: the layer rule sees it.
    assert "planrunner.ledger.postgres" in imports_of(PACKAGE / "ledger" / "__init__.py")


MODULE_CAP = 600  # lines; a module past it does more than one job
COMMAND_FUNCTION_CAP = 60  # lines; a command is options -> request -> run -> report -> exit code
COMMAND_HELPERS = {"__init__", "options", "context"}  # shared by the commands, not commands


def test_no_module_is_over_the_cap() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MODULE_CAP
    }
    assert not big, big


def test_no_command_function_is_over_the_cap() -> None:
    long = {}
    for path in (PACKAGE / "commands").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > COMMAND_FUNCTION_CAP:
                    long[f"{path.name}:{node.name}"] = n
    assert not long, long


def test_no_command_imports_another() -> None:
    wrong = [
        f"{path.stem} imports {target}"
        for path in sorted((PACKAGE / "commands").glob("*.py"))
        for target in imports_of(path)
        if target.startswith("planrunner.commands.")
        and target.rsplit(".", 1)[1] not in COMMAND_HELPERS
        and target != f"planrunner.commands.{path.stem}"
    ]
    assert not wrong, wrong

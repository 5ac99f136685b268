"""Command line: the parser, dispatch, the one error handler and the exit codes.

Each command lives in ``planrunner/commands/`` (one module per command, as pre-commit
arranges its own): its help, its options (``add_arguments``) and its ``main``. Command
modules import their heavy parts inside ``main``, so ``validate`` does not pay for HTTP or
the simulator.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from planrunner import __version__
from planrunner.commands import options
from planrunner.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    PlanInvalid,
    PlanrunnerError,
)

EXIT_CODES_HELP = """exit codes:
  0    success: plan computed; apply left every entry done; status: every instance succeeded
  1    apply/cancel ended with failed or unknown entries, or a runtime error; status: a run failed
  2    invalid plan or usage; nothing was sent
  3    the ledger is locked by another apply, or is unreadable or corrupt
  4    plan --detailed-exitcode: entries are pending; status: runs still going
  70   internal error (a bug)
  130  interrupted; in-flight requests were finished and recorded

example:
  planrunner apply plans/example.yaml --sim
"""

# Command name -> module under planrunner.commands (or a full module path).
COMMANDS = {
    "init": "planrunner.commands.init",
    "validate": "planrunner.commands.validate",
    "plan": "planrunner.commands.plan",
    "apply": "planrunner.commands.apply",
    "status": "planrunner.commands.status",
    "cancel": "planrunner.commands.cancel",
    "doctor": "planrunner.commands.doctor",
    "ledger": "planrunner.commands.ledger",
    "sim": "planrunner.sim.command",
    "schema": "planrunner.commands.schema",
    "completion": "planrunner.commands.completion",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    """The whole command-line grammar."""
    common = options.common()
    parents = {
        "resolving": options.resolving(),
        "one_plan": options.one_plan(),
        "one_plan_no_resolving": options.one_plan(with_resolving=False),
        "selecting": options.selecting(),
    }
    parser = options.Parser(
        prog="planrunner",
        description="Apply version-controlled trigger plans to the EnOS Data Flow batch service, exactly once.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"planrunner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=options.Parser)
    for name in COMMANDS:
        module = _module(name)
        p = sub.add_parser(
            name,
            parents=[common, *(parents[x] for x in getattr(module, "PARENTS", ()))],
            help=getattr(module, "HELP", None),
            description=getattr(module, "DESCRIPTION", None),
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            sub: argparse.ArgumentParser = action.choices[name]
            # A command with subcommands of its own (ledger): the innermost one that parsed.
            return sub
    return parser


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM during start-up: unwind like Ctrl-C (exit 130, a message, no traceback)."""
    raise KeyboardInterrupt


# Commands that take SIGTERM as Ctrl-C for the whole run (apply installs its own handler
# once it is sending; start-up before that is covered here). Others get the default back.
_SIGTERM_AS_INTERRUPT = frozenset({"apply", "cancel"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    import signal
    import threading

    in_main = threading.current_thread() is threading.main_thread()
    previous_term = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        return _main(argv, in_main, previous_term)
    finally:
        if in_main and signal.getsignal(signal.SIGTERM) is _interrupt:
            signal.signal(signal.SIGTERM, previous_term)


def _main(argv: Sequence[str] | None, in_main: bool, previous_term: object) -> int:
    import signal

    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
    except KeyboardInterrupt:
        print("planrunner: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if in_main and args.command not in _SIGTERM_AS_INTERRUPT:
        signal.signal(signal.SIGTERM, previous_term)  # type: ignore[arg-type]
    if extra:
        # The subcommand's usage and a did-you-mean, not the top-level usage.
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_INVALID
    from planrunner import log

    log.configure(args.log_format, args.verbose)
    try:
        module = _module(args.command)
        args.root_parser = parser  # for commands that describe the grammar (completion)
        entry = getattr(module, "main", None) or module.run
        code: int = entry(args)
        return code
    except PlanrunnerError as e:
        _report_error(e, args.log_format)
        return e.exit_code
    except KeyboardInterrupt:
        print("planrunner: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `planrunner plan ... | head`: the reader left; that is not our failure.
        sys.stderr.close()
        return EXIT_OK
    except Exception as e:  # the last resort: a bug gets one line, not a traceback
        return _internal_error(e, args.verbose)


def _report_error(e: PlanrunnerError, log_format: str | None) -> None:
    """One line per problem on stderr: plain text, or JSON objects under --log-format json."""
    if log_format == "json":
        import json

        lines = e.lines if isinstance(e, PlanInvalid) else [str(e)]
        for line in lines:
            doc = {"level": "error", "event": line, "exit_code": e.exit_code}
            print(json.dumps(doc), file=sys.stderr)
        return
    # Plan problems are already "file:line:col: error: ..." lines.
    print(e if isinstance(e, PlanInvalid) else f"planrunner: error: {e}", file=sys.stderr)


def _internal_error(e: BaseException, verbose: int) -> int:
    """Exit 70 with one line naming the error (the traceback only with -v), secrets redacted."""
    import os
    import traceback

    text = "".join(traceback.format_exception(e)).rstrip() if verbose else f"{type(e).__name__}: {e}"
    for name in ("ENOS_ACCESS_KEY", "ENOS_SECRET_KEY"):
        value = os.environ.get(name)
        if value:
            text = text.replace(value, "***")
    if not verbose:
        text = " ".join(text.split())
    print(
        f"planrunner: internal error (a bug): {text}\n"
        "planrunner: please report it to the planrunner maintainers, with the output of the "
        "same command run with -v",
        file=sys.stderr,
    )
    return EXIT_INTERNAL

"""Command line: the parser, dispatch, the one error handler and the exit codes.

Each command lives in ``planrunner/commands/`` (one module per command, as pre-commit
arranges its own): its description, its options (``add_arguments``) and its ``main``. Command
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

# Command name -> (its module, its one-line help). The help lives here so that the
# top-level --help, and every other command, import only the module they run.
COMMANDS = {
    "init": (
        "planrunner.commands.init",
        "set up a repository: .gitattributes, .gitignore, example plan, schema, CI workflow",
    ),
    "validate": ("planrunner.commands.validate", "check plans: schema, cron, zones, windows"),
    "plan": ("planrunner.commands.plan", "dry run: what apply would trigger"),
    "apply": ("planrunner.commands.apply", "trigger every entry not yet done, exactly once"),
    "status": (
        "planrunner.commands.status",
        "look up the instances apply triggered: running, succeeded or failed",
    ),
    "cancel": (
        "planrunner.commands.cancel",
        "cancel the plan's instances that are still queued or running",
    ),
    "doctor": (
        "planrunner.commands.doctor",
        "check a real gateway's assumptions without changing anything",
    ),
    "ledger": (
        "planrunner.commands.ledger",
        "inspect, check, compact, export or import a ledger",
    ),
    "sim": ("planrunner.commands.sim", "run the local service simulator (loopback only)"),
    "schema": ("planrunner.commands.schema", "print the plan JSON Schema"),
    "completion": (
        "planrunner.commands.completion",
        "print a shell completion script (bash, zsh, fish)",
    ),
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name][0])


def command_in(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is one), if any."""
    return next((word for word in argv if word in COMMANDS), None)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command-line grammar; with ``only``, that command's options in full and the
    others by name (so that running one command imports only its own module)."""
    parser = options.Parser(
        prog="planrunner",
        description="Apply version-controlled trigger plans to the EnOS Data Flow batch service, exactly once.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[options.common()],
    )
    parser.add_argument("--version", action="version", version=f"planrunner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=options.Parser)
    for name, (_, help_text) in COMMANDS.items():
        if only is not None and name != only:
            options.add_common(sub.add_parser(name, help=help_text), depth=1)
            continue
        module = _module(name)
        p = sub.add_parser(
            name,
            parents=options.parents(*getattr(module, "PARENTS", ())),
            help=help_text,
            description=getattr(module, "DESCRIPTION", None),
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)  # the shared options through options.add_*, then its own
        options.add_common(p, depth=1)
        for nested in _children(p):  # ledger log, ledger verify, ...: every command takes them
            options.add_common(nested, depth=2)
    return parser


def _children(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [
        child
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for child in action.choices.values()
    ]


def _subparser(parser: argparse.ArgumentParser, words: Sequence[str]) -> argparse.ArgumentParser:
    """The innermost (sub)command parser the words name (``ledger log``: the ``log`` one)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for i, word in enumerate(words):
                if word in action.choices:
                    return _subparser(action.choices[word], words[i + 1 :])
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

    words = list(sys.argv[1:] if argv is None else argv)
    named = command_in(words)
    parser: argparse.ArgumentParser | None = None
    try:
        # Only the command being run is imported; completion describes the whole grammar.
        parser = build_parser(only=None if named == "completion" else named or "")
        args, extra = parser.parse_known_args(words)
        if extra:
            # The subcommand's usage and a did-you-mean, not the top-level usage.
            _subparser(parser, words).error(f"unrecognized arguments: {' '.join(extra)}")
    except options.UsageExit as e:
        if options.wants_json(words):
            _json_error(e.message, EXIT_INVALID)
        raise
    except KeyboardInterrupt:
        print("planrunner: interrupted", file=sys.stderr)
        if options.wants_json(words):
            _json_error("interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    options.merge_common(args)
    if in_main and args.command not in _SIGTERM_AS_INTERRUPT:
        signal.signal(signal.SIGTERM, previous_term)  # type: ignore[arg-type]
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_INVALID
    from planrunner import log

    log.configure(args.log_format, args.verbose)
    as_json = getattr(args, "format", None) == "json"
    try:
        module = _module(args.command)
        args.root_parser = parser  # for commands that describe the grammar (completion)
        entry = getattr(module, "main", None) or module.run
        with options.proxy_given(getattr(args, "proxy", None)):
            code: int = entry(args)
        return code
    except PlanrunnerError as e:
        message = _only_hints_it_takes(str(e), _subparser(parser, words))
        _report_error(e, message, args.log_format)
        if as_json and not options.was_reported(e):
            lines = e.lines if isinstance(e, PlanInvalid) else None
            _json_error("; ".join(lines) if lines else message, e.exit_code, lines)
        return e.exit_code
    except KeyboardInterrupt:
        print("planrunner: interrupted", file=sys.stderr)
        if as_json:
            _json_error("interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `planrunner plan ... | head`: the reader left; that is not our failure.
        sys.stderr.close()
        return EXIT_OK
    except Exception as e:  # the last resort: a bug gets one line, not a traceback
        code = _internal_error(e, args.verbose)
        if as_json:
            _json_error(f"internal error (a bug): {type(e).__name__}", code)
        return code


def _only_hints_it_takes(message: str, command: argparse.ArgumentParser) -> str:
    """Drop an ``(or use --sim)`` hint when the command has no ``--sim`` (finding 9)."""
    import re

    taken = {s for a in command._actions for s in a.option_strings}
    return re.sub(
        r" \(or use (--[a-z-]+)\)",
        lambda m: m[0] if m[1] in taken else "",
        message,
    )


def _json_error(message: str, exit_code: int, problems: list[str] | None = None) -> None:
    """Under ``--format json``, a run that stops early still prints one JSON object."""
    sys.stdout.write(options.error_json(message, exit_code, problems) + "\n")
    sys.stdout.flush()


def _report_error(e: PlanrunnerError, message: str, log_format: str | None) -> None:
    """One line per problem on stderr: plain text, or JSON objects under --log-format json."""
    if log_format == "json":
        import json

        lines = e.lines if isinstance(e, PlanInvalid) else [message]
        for line in lines:
            doc = {"level": "error", "event": line, "exit_code": e.exit_code}
            print(json.dumps(doc), file=sys.stderr)
        return
    # Plan problems are already "file:line:col: error: ..." lines.
    print(e if isinstance(e, PlanInvalid) else f"planrunner: error: {message}", file=sys.stderr)


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

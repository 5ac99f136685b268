"""Option types and the option groups several commands share (argparse parents)."""

from __future__ import annotations

import argparse
import sys

from planrunner.errors import EXIT_INVALID

MAX_PORT = 65_535
DEFAULT_CONCURRENCY = 4


class Parser(argparse.ArgumentParser):
    """argparse with our exit code for usage errors, and a did-you-mean for unknown options."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits 2 on usage errors, which is our "invalid plan or usage" code too.
        self.print_usage(sys.stderr)
        hint = _did_you_mean(self, message)
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}{hint}\n")


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    import difflib
    import re

    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        options = re.findall(r"'([^']*)'", choice[2])
        close = difflib.get_close_matches(choice[1], options, n=1)
        return f' (did you mean "{close[0]}"?)' if close else ""
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return ""
    known = [s for a in parser._actions for s in a.option_strings]
    hints = []
    for word in message[len(prefix) :].split():
        if word.startswith("-"):
            close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1)
            if close:
                hints.append(f'"{word}" (did you mean "{close[0]}"?)')
    return "; " + ", ".join(hints) if hints else ""


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (``0``, ``0.0`` and ``0e0`` alike)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (pick a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be 0-{MAX_PORT}, got {value}")
    return value


def common() -> Parser:
    """What every command takes: log format and verbosity."""
    p = Parser(add_help=False)
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines on stderr as text or one JSON object each (default: text on a terminal, else json)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more detail in the logs")
    return p


def resolving() -> Parser:
    """What validate, plan and apply share: how to resolve."""
    p = Parser(add_help=False)
    p.add_argument(
        "--now", metavar="TIME", help="the moment 'to: now' means: epoch ms or RFC 3339; naive is UTC"
    )
    p.add_argument(
        "--max-triggers",
        type=positive_int,
        default=None,
        metavar="N",
        help="most entries a flow may yield (default 110000, above a year of */5)",
    )
    return p


def one_plan(with_resolving: bool = True) -> Parser:
    """One plan and its ledger."""
    p = Parser(add_help=False, parents=[resolving()] if with_resolving else [])
    p.add_argument("plan", metavar="PLAN", help="plan file (YAML)")
    p.add_argument(
        "--ledger",
        metavar="PATH",
        help="ledger file (default: $PLANRUNNER_LEDGER, else the plan's path with .ledger.jsonl)",
    )
    return p


def selecting() -> Parser:
    """--flow and --exclude: which flows of the plan a command works on."""
    p = Parser(add_help=False)
    p.add_argument(
        "--flow",
        action="append",
        default=[],
        metavar="NAME",
        help="only this flow (a name or shell glob; repeatable)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this flow out (a name or shell glob; repeatable)",
    )
    return p


def add_format(p: argparse.ArgumentParser, *choices: str) -> None:
    """``--format``: ``text`` (the default) or one of ``choices``."""
    p.add_argument(
        "--format",
        choices=("text", *choices),
        default="text",
        help=f"output format: text (default), {', '.join(choices)}",
    )


def add_gateway(p: argparse.ArgumentParser) -> None:
    """``--gateway URL``: override the plan's target.gateway."""
    p.add_argument("--gateway", metavar="URL", help="override target.gateway")


def add_pace(p: argparse.ArgumentParser, what: str) -> None:
    """``--concurrency`` and ``--rate``: how many requests at once and how many per second."""
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"{what} at once (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--rate",
        type=positive_float,
        default=None,
        metavar="PER_SECOND",
        help="cap on requests per second (default: no cap; a throttled gateway slows the run)",
    )


def add_yes(p: argparse.ArgumentParser) -> None:
    """``--yes``: no confirmation (required when stdin is not a terminal)."""
    p.add_argument(
        "--yes",
        action="store_true",
        help="do not ask for confirmation (required when stdin is not a terminal)",
    )


def add_lock_timeout(p: argparse.ArgumentParser) -> None:
    """``--lock-timeout SECONDS``: how long to wait for another run's ledger lock."""
    p.add_argument(
        "--lock-timeout",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another run's ledger lock (default 0)",
    )


def exit_codes(*rows: tuple[int, str], example: str) -> str:
    """A command's epilog: its own exit codes and one example."""
    lines = ["exit codes:"] + [f"  {code:<4} {text}" for code, text in rows]
    return "\n".join([*lines, "", "example:", f"  {example}", ""])

"""Option types and the options several commands share (options.add_* in add_arguments)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from functools import partial

from planrunner.errors import EXIT_INVALID

MAX_PORT = 65_535
DEFAULT_CONCURRENCY = 4


class UsageExit(SystemExit):
    """A usage error argparse found; ``message`` is its one line (for ``--format json``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code)
        self.message = message


class Parser(argparse.ArgumentParser):
    """argparse with our exit code for usage errors, and a did-you-mean for unknown options."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits 2 on usage errors, which is our "invalid plan or usage" code too.
        self.print_usage(sys.stderr)
        text = f"{message}{_did_you_mean(self, message)}"
        sys.stderr.write(f"{self.prog}: error: {text}\n")
        raise UsageExit(EXIT_INVALID, text)


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
            name = word.split("=", 1)[0]
            # Never the option just refused: that one is not taken here, whatever its spelling.
            close = [c for c in difflib.get_close_matches(name, known, n=3) if c != name]
            if close:
                hints.append(f'"{word}" (did you mean "{close[0]}"?)')
    return "; " + ", ".join(hints) if hints else ""


def whole_number(text: str, least: int) -> int:
    """A whole number >= ``least``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    return whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    return whole_number(text, 0)


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
    """What every command takes: log format and verbosity (see :func:`add_common`)."""
    p = Parser(add_help=False)
    add_common(p)
    return p


def add_common(p: argparse.ArgumentParser, depth: int = 0) -> None:
    """``--log-format`` and ``-v``, taken before or after the command (and its subcommand).

    argparse copies a subcommand's defaults over what the level above parsed, so each level
    keeps its own ``dest`` (``verbose``, ``verbose_1``, ...; unset below the top) and
    :func:`merge_common` adds them up: ``planrunner -v apply ...`` and ``planrunner apply
    ... -v`` are the same.
    """
    suffix = f"_{depth}" if depth else ""
    unset: object = argparse.SUPPRESS if depth else None
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        dest=f"log_format{suffix}",
        default=unset,
        help="log lines on stderr as text or one JSON object each (default: text on a terminal, else json)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest=f"verbose{suffix}",
        default=argparse.SUPPRESS if depth else 0,
        help="more detail in the logs",
    )


COMMON_DEPTHS = 3  # planrunner, the command, a subcommand (ledger log)


def merge_common(args: argparse.Namespace) -> None:
    """Fold the per-level ``--log-format``/``-v`` into ``args.log_format``/``args.verbose``."""
    for depth in range(1, COMMON_DEPTHS):
        fmt = getattr(args, f"log_format_{depth}", None)
        if fmt is not None:
            args.log_format = fmt  # the innermost one given wins
        args.verbose = getattr(args, "verbose", 0) + getattr(args, f"verbose_{depth}", 0)


_reported: list[BaseException] = []  # errors a command already printed in its JSON output


def reported_in_json(e: BaseException) -> BaseException:
    """Mark ``e`` as already in the ``--format json`` output (the handler adds no second one)."""
    _reported[:] = [e]
    return e


def was_reported(e: BaseException) -> bool:
    """Whether a command printed ``e`` in its JSON output already."""
    return any(x is e for x in _reported)


def error_json(message: str, exit_code: int, problems: list[str] | None = None) -> str:
    """The ``--format json`` output of a run that stopped before its report: one object."""
    import json

    from planrunner.report import FORMAT_VERSION

    doc: dict[str, object] = {"formatVersion": FORMAT_VERSION, "error": message, "exitCode": exit_code}
    if problems is not None:
        doc["problems"] = problems
    return json.dumps(doc)


def wants_json(words: list[str]) -> bool:
    """Whether the command line asks for ``--format json`` (read before parsing succeeded)."""
    for i, word in enumerate(words):
        if word == "--format=json" or (word == "--format" and words[i + 1 : i + 2] == ["json"]):
            return True
    return False


def add_resolving(p: argparse.ArgumentParser) -> None:
    """What validate, plan and apply share: how to resolve (``--now``, ``--max-triggers``)."""
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


def add_plan(p: argparse.ArgumentParser, *, many: bool = False, resolving: bool = True) -> None:
    """One plan (``many``: one or more) and its ledger, and how to resolve it."""
    if resolving:
        add_resolving(p)
    if many:
        p.add_argument("plan", metavar="PLAN", nargs="+", help="plan files (YAML), applied in turn")
    else:
        p.add_argument("plan", metavar="PLAN", help="plan file (YAML)")
    p.add_argument(
        "--ledger",
        metavar="PATH",
        help="ledger file (default: $PLANRUNNER_LEDGER, else the plan's path with .ledger.jsonl)",
    )


def add_selecting(p: argparse.ArgumentParser) -> None:
    """--flow, --exclude, --from and --to: which flows and times of the plan a command works on."""
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
    p.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="only entries at or after TIME (epoch ms or RFC 3339; naive is UTC)",
    )
    p.add_argument(
        "--to",
        dest="end",
        metavar="TIME",
        help="only entries at or before TIME (a bare date: through its end)",
    )


def parents(*names: str) -> list[Parser]:
    """The shared options as argparse parents, for a command module that still names them in
    ``PARENTS`` (status, cancel) rather than calling the ``add_*`` functions above."""
    adders: dict[str, Callable[[argparse.ArgumentParser], None]] = {
        "resolving": add_resolving,
        "one_plan": add_plan,
        "many_plans": partial(add_plan, many=True),
        "selecting": add_selecting,
    }
    out = []
    for name in names:
        parent = Parser(add_help=False)
        adders[name](parent)
        out.append(parent)
    return out


def add_format(p: argparse.ArgumentParser, *choices: str) -> None:
    """``--format``: ``text`` (the default) or one of ``choices``."""
    p.add_argument(
        "--format",
        choices=("text", *choices),
        default="text",
        help=f"output format: text (default), {', '.join(choices)}",
    )


def add_gateway(p: argparse.ArgumentParser) -> None:
    """``--gateway URL``: override the plan's target.gateway; and ``--proxy URL``."""
    p.add_argument("--gateway", metavar="URL", help="override target.gateway")
    add_proxy(p)


def proxy_url(text: str) -> str:
    """An explicit proxy, ``http(s)://[user:password@]host[:port]`` (never echoed)."""
    from planrunner import protocol

    why = protocol.proxy_problem(text)
    if why:
        raise argparse.ArgumentTypeError(why)
    return text


def add_proxy(p: argparse.ArgumentParser) -> None:
    """``--proxy URL``: send https:// requests through this proxy (else $PLANRUNNER_PROXY)."""
    p.add_argument(
        "--proxy",
        type=proxy_url,
        metavar="URL",
        help="send https:// requests through this proxy (default: $PLANRUNNER_PROXY; "
        "HTTPS_PROXY is never read)",
    )


@contextlib.contextmanager
def proxy_given(url: str | None) -> Iterator[None]:
    """Run a command with ``--proxy``'s value as every client's proxy (nothing when None)."""
    if url is None:
        yield
        return
    from planrunner import enos

    with enos.proxy_given(url):
        yield


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


def add_pacing(p: argparse.ArgumentParser) -> None:
    """apply's pacing by instances: ``--max-unfinished``, ``--wait``, ``--interval`` and
    ``--halt-on-failure`` (over the plan's ``maxUnfinished`` and ``haltOnFailure``)."""
    p.add_argument(
        "--max-unfinished",
        type=positive_int,
        default=None,
        metavar="N",
        help="keep at most N instances of each flow that this ledger triggered unfinished on the "
        "service; the rest is held back (exit 4) unless --wait (default: the plan's maxUnfinished)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="with a max-unfinished limit, wait for instances to finish and send as they do",
    )
    p.add_argument(
        "--interval",
        type=positive_float,
        default=None,
        metavar="S",
        help="with --wait, the longest wait between looks at unfinished instances (default 30; "
        "the waits start at 1 s and double)",
    )
    p.add_argument(
        "--halt-on-failure",
        action="store_true",
        help="send no more of a flow once one of its instances ended FAIL, TIMEOUT or "
        "INTERNAL_ERROR (default: the plan's haltOnFailure)",
    )


def add_rerun_failed(p: argparse.ArgumentParser, what: str = "") -> None:
    """``--rerun-failed N`` (over the plan's ``rerunFailed``): apply's, and plan --refresh's
    (which shows what apply would rerun)."""
    p.add_argument(
        "--rerun-failed",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="give each entry whose instance ended FAIL, TIMEOUT or INTERNAL_ERROR up to N more "
        "instances, each at the first free minute of its hour" + what
        + " (default: the plan's rerunFailed; 0: none)",
    )


def add_yes(p: argparse.ArgumentParser) -> None:
    """``--yes``: no confirmation (required when stdin is not a terminal)."""
    p.add_argument(
        "--yes",
        "-y",
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

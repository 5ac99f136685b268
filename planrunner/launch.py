"""The entry of the installed ``planrunner`` command and of ``python -m planrunner``.

Signal handlers go in before anything heavy is imported: a Ctrl-C or SIGTERM while the
command starts up ends it with exit 130 and one line, never a ``KeyboardInterrupt``
traceback nor a silent death by SIGTERM. Only the standard library's ``signal`` and ``sys``
(already loaded by the interpreter) are imported here.
"""

import signal
import sys

EXIT_INTERRUPTED = 130  # planrunner.errors.EXIT_INTERRUPTED, not imported: it is not loaded yet


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run() -> int:
    """Install the start-up handlers, then run the command line; return the exit code."""
    signal.signal(signal.SIGTERM, _interrupt)  # SIGINT already raises KeyboardInterrupt
    try:
        from planrunner.cli import main

        code = main()  # installs the handlers each command needs, then restores these
    except KeyboardInterrupt:
        sys.stderr.write("planrunner: interrupted\n")
        code = EXIT_INTERRUPTED
    # The run is over: a late signal must not turn a clean exit into a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return code

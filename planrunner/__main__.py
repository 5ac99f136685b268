import signal
import sys


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# Signals during start-up (imports) end cleanly: exit 130, one line, no traceback.
signal.signal(signal.SIGTERM, _interrupt)
try:
    from planrunner.cli import main
except KeyboardInterrupt:
    sys.stderr.write("planrunner: interrupted\n")
    raise SystemExit(130) from None
signal.signal(signal.SIGTERM, signal.SIG_DFL)  # main() installs its own for the commands that need it

raise SystemExit(main())

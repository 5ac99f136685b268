"""``planrunner schema``: print the plan JSON Schema."""

from __future__ import annotations

import argparse
import sys

from planrunner.commands import options
from planrunner.errors import EXIT_OK

DESCRIPTION = (
    "Print the plan JSON Schema (2020-12) that validate uses, e.g. to write it into your "
    "repository for editors: planrunner schema > schemas/plan.schema.json"
)
EPILOG = options.exit_codes((0, "printed"), example="planrunner schema > schemas/plan.schema.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """schema takes no options of its own."""


def main(args: argparse.Namespace) -> int:
    """Print the schema."""
    from planrunner import schema

    sys.stdout.write(schema.text())
    return EXIT_OK

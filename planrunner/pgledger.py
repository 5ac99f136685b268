"""Moved to :mod:`planrunner.ledger.postgres`; this name stays until nothing imports it."""

from planrunner.ledger.postgres import *  # noqa: F403

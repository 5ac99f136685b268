"""Moved to :mod:`planrunner.ledger.tools`; this name stays until nothing imports it."""

from planrunner.ledger.tools import *  # noqa: F403

"""Moved to :mod:`planrunner.runs.apply`; this alias keeps old imports working until they move."""

from __future__ import annotations

import sys

from planrunner.runs import apply as _apply

sys.modules[__name__] = _apply

"""The ledger (DESIGN 4, 9): its record format, the fold, and the file and PostgreSQL backends.

``from planrunner import ledger; ledger.X`` keeps working for every name the rest of the
code uses while the package takes shape: they are re-exported here from the modules that
now hold them.
"""

from planrunner.ledger.file import *  # noqa: F403
from planrunner.ledger.file import _FIELD_TYPES as _FIELD_TYPES
from planrunner.ledger.file import _REQUIRED as _REQUIRED
from planrunner.ledger.file import _check as _check

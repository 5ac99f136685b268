"""What the fuzz tests of the plan language and of the ledger share: hypothesis' settings
(``FUZZ_EXAMPLES`` examples per property, default 200) and the check that a run ended in a
documented exit code with a located message, never a traceback.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from planrunner.cli import main

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=30_000,  # ms per input (a loaded CI machine): a hang fails instead of blocking
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    derandomize=os.environ.get("FUZZ_SEED") is None,
)


weird_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "\t",
            "\u202e",
            "\ufeff",
            "0x7f",
            "1e309",
            "-0",
            "~",
            "null",
            "on",
            "2026-02-30",
            "24:00",
        ]
    ),
)


values = st.recursive(
    weird_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err

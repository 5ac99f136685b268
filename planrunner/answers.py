"""What an answer from the service means: its :class:`Kind` (what the engine must do with
it), the classified :class:`Answer`, and a :class:`Lookup`'s verdict. The client
(:mod:`planrunner.enos`) makes them; lookup and the engines read them."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # {flowId}-{digits}, with room


class Kind(enum.Enum):
    """What an answer means for the entry it was about."""

    OK = "ok"  # code 0
    PERMANENT = "permanent"  # a definite refusal: record failed, never retry
    DUPLICATE = "duplicate"  # 62102 on Trigger: maybe an instance for the minute exists
    RETRYABLE = "retryable"  # nothing was created: back off and send again
    UNKNOWN = "unknown"  # the request may have been acted on: look it up before re-sending
    AUTH = "auth"  # 401, a token error, or an auth failure in a 200 body
    FATAL = "fatal"  # the gateway cannot be talked to safely (TLS): stop the run


@dataclass(frozen=True, slots=True)
class Answer:
    """One classified answer. ``code`` is the service code, else the HTTP status."""

    kind: Kind
    code: int | None
    msg: str
    data: Any = None
    retry_after: float | None = None
    http_status: int | None = None

    @property
    def flow_instance_id(self) -> str | None:
        """The instance id of a successful trigger (None when it has not the shape of one)."""
        if isinstance(self.data, dict):
            value = self.data.get("flowInstanceId")
            return value if isinstance(value, str) and INSTANCE_ID.fullmatch(value) else None
        return None


@dataclass(frozen=True, slots=True)
class Lookup:
    """Whether an instance for a trigger exists: True, False, or None when unknown."""

    found: bool | None
    flow_instance_id: str | None
    reason: str = ""


def code_text(answer: Answer) -> str:
    """`` (code N)`` when the answer has a code; nothing otherwise (never "None")."""
    return f" (code {answer.code})" if answer.code is not None else ""


def describe(answer: Answer, msg: str | None = None) -> str:
    """``CODE: message``, or the message alone when there is no code."""
    text = answer.msg if msg is None else msg
    return f"{answer.code}: {text}" if answer.code is not None else text

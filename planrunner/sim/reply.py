"""What the simulator answers: one HTTP reply, before it is encoded.

The gateway, the service and the fault injector all return a :class:`Reply`; the HTTP
layer (:mod:`planrunner.sim.http`) only encodes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planrunner import protocol

HTTP_OK = 200
JSON_TYPE = "application/json;charset=UTF-8"
DROPPED = -1  # the trigger log's status for a connection closed without an answer


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP status, a JSON document or raw bytes, extra headers, or a dropped connection."""

    status: int
    body: dict[str, Any] | bytes
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False  # close the connection without answering

    @property
    def log_status(self) -> int:
        """The trigger log's ``status``: the body code, else the HTTP status, -1 if dropped.

        A 200 body with no ``status``/``code`` but the legacy ``apim_status`` logs that.
        """
        if self.drop:
            return DROPPED
        if self.status != HTTP_OK or not isinstance(self.body, dict):
            return self.status
        for key in ("status", "code", protocol.LEGACY_AUTH_KEY):
            value = self.body.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return self.status


def json_reply(body: dict[str, Any], status: int = HTTP_OK) -> Reply:
    """A JSON answer."""
    return Reply(status, body)


def text_reply(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A short plain-text answer, as the gateway gives with its own HTTP statuses."""
    return Reply(status, text.encode(), headers)


DROP = Reply(0, b"", drop=True)

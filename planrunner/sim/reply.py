"""What the simulator answers: one HTTP reply, before it is encoded.

The gateway, the service and the fault injector all return a :class:`Reply`; the HTTP
layer (:mod:`planrunner.sim.http`) only encodes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    # The trigger log record of this answer: the HTTP layer sets its "answered" to False
    # when the client had gone before the answer could be written.
    log: dict[str, Any] | None = field(default=None, compare=False, repr=False)

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


def with_log(reply: Reply, record: dict[str, Any]) -> Reply:
    """``reply`` tied to its trigger log ``record``."""
    return Reply(reply.status, reply.body, reply.headers, reply.drop, record)


def poison(envelope: dict[str, Any], text: str, short: str) -> dict[str, Any]:
    """An answer with every string the service chose made hostile (``--hostile``).

    The message, instance ids, the time-zone name and task logs get ``text`` (the long injection);
    instance statuses (then strings), status names and flow names get ``short``. The
    envelope's code, times, flow ids and the token service's token are left alone: they carry
    the answer's meaning.
    """
    out = dict(envelope)
    if isinstance(out.get("msg"), str):
        out["msg"] += text
    if "data" in out:
        out["data"] = _poison_data(out["data"], text, short)
    return out


def _poison_data(value: Any, text: str, short: str) -> Any:
    if isinstance(value, list):
        return [_poison_data(item, text, short) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in LONG_FIELDS and isinstance(item, str):
            out[key] = item + text
        elif key in SHORT_FIELDS and isinstance(item, str | int) and not isinstance(item, bool):
            out[key] = f"{item}{short}"
        else:
            out[key] = _poison_data(item, text, short)
    return out


LONG_FIELDS = frozenset({"flowInstanceId", "instanceId", "timezone", "log"})
SHORT_FIELDS = frozenset({"status", "statusDesc", "flowName", "doAs"})

"""The app's credentials: kept out of every repr, log, message and pickle; the token
request's ``encryption`` and each call's signature (the arithmetic is in :mod:`protocol`)."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from planrunner import protocol
from planrunner.errors import UsageError

FOREIGN_TEXT_LIMIT = 500  # characters of a gateway's message kept in output, logs, ledger
CREDENTIAL_PIECE = 4  # a credential's prefix this long left at a cut is redacted too
FOREIGN_READ_LIMIT = 65_536  # characters of foreign text read at all (redacted, then cut)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


class Credentials:
    """App key and secret; never shown in a repr, a log or a message."""

    __slots__ = ("_key", "_secret")

    def __init__(self, access_key: str, secret_key: str) -> None:
        self._key = access_key
        self._secret = secret_key

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read ``ENOS_ACCESS_KEY`` and ``ENOS_SECRET_KEY``; a missing one is a usage error."""
        env = os.environ if environ is None else environ
        missing = [n for n in ("ENOS_ACCESS_KEY", "ENOS_SECRET_KEY") if not env.get(n)]
        if missing:
            raise UsageError(
                f"{' and '.join(missing)} not set: planrunner needs the app's AccessKey and SecretKey "
                "in the environment (or use --sim)"
            )
        return cls(env["ENOS_ACCESS_KEY"], env["ENOS_SECRET_KEY"])

    def __repr__(self) -> str:
        return "Credentials(access_key=***, secret_key=***)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("credentials are not picklable")

    def encryption(self, timestamp: int) -> str:
        """The token request's ``encryption``."""
        return protocol.token_encryption(self._key, timestamp, self._secret)

    def sign(
        self, token: str, params: Mapping[str, str], body: bytes | None, timestamp: int
    ) -> str:
        """The ``apim-signature`` of one call."""
        return protocol.signature(token, params, body, timestamp, self._secret)

    @property
    def access_key(self) -> str:
        """The app key (sent in token requests; still never logged)."""
        return self._key

    def redact(self, text: str) -> str:
        """``text`` with both credentials replaced, for messages built from foreign text."""
        for value in (self._secret, self._key):
            if value:
                text = text.replace(value, "***")
        return text

    def values(self) -> tuple[str, str]:
        """Both credentials, for redacting a piece of one left at a cut (never shown)."""
        return (self._secret, self._key)

    def clean(self, text: str, token: str | None, limit: int = FOREIGN_TEXT_LIMIT) -> str:
        """Foreign text made safe to show: both credentials and ``token`` redacted, controls
        out, then cut to ``limit`` characters, a credential's piece left at the cut redacted."""
        text = self.redact(text[:FOREIGN_READ_LIMIT])
        if token:
            text = text.replace(token, "***")
        text = _CONTROL.sub(" ", text).replace("::", ": :")
        if len(text) > limit:
            text = text[: limit - 1]
            for value in (*self.values(), token or ""):
                for n in range(min(len(value) - 1, len(text)), CREDENTIAL_PIECE - 1, -1):
                    if text.endswith(value[:n]):
                        text = text[:-n] + "***"
                        break
            text += "…"
        return text


class Clock:
    """Millisecond timestamps that never repeat in this process (token code 1001)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            now = max(time.time_ns() // 1_000_000, self._last + 1)
            self._last = now
            return now

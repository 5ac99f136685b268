"""The API gateway: access tokens (get, refresh) and request signatures.

Token answers follow the token service's documented shape and codes. Signed calls are
checked over the exact bytes received; how a failure is answered is the dialect's
``auth_failure`` (undocumented): HTTP 401 with a JSON body, or HTTP 200 with a legacy body.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from planrunner import protocol
from planrunner.sim.faults import Dialect
from planrunner.sim.reply import Reply, json_reply

BUSINESS = "apim-token-service"
# The simulator's documented defaults (docs/simulator.md): its app key and secret, token life.
DEFAULT_ACCESS_KEY = "sim-access-key"
DEFAULT_SECRET_KEY = "sim-secret-key"  # noqa: S105 - the simulator's documented default
DEFAULT_TOKEN_TTL = 7200  # seconds
TOKEN_OK_MSG = "SUCCESS"  # noqa: S105 - a message, not a secret
TOKEN_BYTES = 16
# How far apim-timestamp may be from the gateway's clock (not documented; generous).
MAX_CLOCK_SKEW_MS = 15 * 60 * 1000
HTTP_UNAUTHORIZED = 401
LEGACY_TOKEN_STATUS = 4011  # legacy gateway: "access token expired", under apim_status
SIGNATURE_STATUS = 497  # legacy gateway: "app timestamp or signature check failed"

EMPTY_PARAMETER = 1202
INVALID_PARAMETER = 1004
NO_SUCH_APP_KEY = 1002
BAD_ENCRYPTION = 1003
TOKEN_EXPIRED = 1203
REFRESH_FAILED = 1204


def _token_answer(code: int, data: dict[str, Any] | None = None) -> Reply:
    msg = TOKEN_OK_MSG if code == protocol.OK else protocol.TOKEN_ERRORS[code]
    return json_reply({"status": code, "msg": msg, "business": BUSINESS, "data": data})


def _timestamp_text(value: object) -> str | None:
    """The token request's timestamp as signed: a JSON integer, or a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    return None


class Gateway:
    """Issues tokens and checks the signature of every API call."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        token_ttl: int,
        dialect: Dialect,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.token_ttl = token_ttl
        self.dialect = dialect
        self._clock = clock
        self._lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> expiry, on the monotonic clock
        self._current: str | None = None  # what Get returns while it is valid
        self._seen_encryptions: set[str] = set()
        self.token_log: list[tuple[str, int]] = []  # (path, code) of every token request

    def revoke_tokens(self) -> None:
        """Forget every issued token (as after a gateway restart): the next call fails auth."""
        with self._lock:
            self.tokens.clear()
            self._current = None

    # -- token service -------------------------------------------------------------------

    def token(self, path: str, body: bytes) -> Reply:
        """Get or refresh an access token (``path`` says which); logged in ``token_log``."""
        reply = self._token(path, body)
        assert isinstance(reply.body, dict)
        with self._lock:
            self.token_log.append((path, int(reply.body["status"])))
        return reply

    def _token(self, path: str, body: bytes) -> Reply:
        try:
            req = json.loads(body)
        except ValueError:
            return _token_answer(INVALID_PARAMETER)
        if not isinstance(req, dict):
            return _token_answer(INVALID_PARAMETER)
        refresh = path == protocol.TOKEN_REFRESH_PATH
        needed = ("appKey", "encryption", "timestamp", *(("accessToken",) if refresh else ()))
        if any(req.get(k) in (None, "") for k in needed):
            return _token_answer(EMPTY_PARAMETER)
        key, enc, old = req["appKey"], req["encryption"], req.get("accessToken")
        ts = _timestamp_text(req["timestamp"])
        if (
            ts is None
            or not isinstance(key, str)
            or not isinstance(enc, str)
            or (refresh and not isinstance(old, str))
        ):
            return _token_answer(INVALID_PARAMETER)
        if key != self.access_key:
            return _token_answer(NO_SUCH_APP_KEY)
        if not secrets.compare_digest(enc, protocol.token_encryption(key, ts, self.secret_key)):
            return _token_answer(BAD_ENCRYPTION)
        now = self._clock()
        with self._lock:
            if enc in self._seen_encryptions:
                return _token_answer(protocol.TOKEN_REPEATED)
            self._seen_encryptions.add(enc)
            if refresh:
                expiry = self.tokens.get(str(old))
                if expiry is None:
                    return _token_answer(REFRESH_FAILED)
                if expiry <= now:
                    return _token_answer(TOKEN_EXPIRED)
            elif self._current is not None and self.tokens.get(self._current, 0.0) > now:
                # A Get while the token is valid returns the same token (documented).
                left = math.ceil(self.tokens[self._current] - now)
                return _token_answer(0, {"accessToken": self._current, "expire": left})
            token = secrets.token_hex(TOKEN_BYTES)
            self.tokens[token] = now + self.token_ttl
            self._current = token  # a refreshed token's predecessor stays valid until expiry
        return _token_answer(0, {"accessToken": token, "expire": self.token_ttl})

    # -- signed calls --------------------------------------------------------------------

    def check(
        self, headers: Mapping[str, str], params: Mapping[str, str], body: bytes
    ) -> Reply | None:
        """None when the call is signed with a valid token, else the gateway's refusal.

        ``headers`` has lower-case names; ``params`` are the decoded query parameters; the
        signature covers them sorted by name, then ``body`` exactly as received.
        """
        token = headers.get("apim-accesstoken", "")
        with self._lock:
            expiry = self.tokens.get(token)
        if expiry is None:
            return self._refuse_token("access token invalid")
        if expiry <= self._clock():
            return self._refuse_token("access token expired")
        ts_text = headers.get("apim-timestamp", "")
        try:
            ts = int(ts_text)
        except ValueError:
            return self._refuse_signature("apim-timestamp missing or not a number")
        if abs(ts - time.time() * 1000) > MAX_CLOCK_SKEW_MS:
            return self._refuse_signature("apim-timestamp too far from the gateway's clock")
        expected = protocol.signature(token, params, body or None, ts, self.secret_key)
        if not secrets.compare_digest(headers.get("apim-signature", ""), expected):
            return self._refuse_signature("signature check failed")
        return None

    def _refuse_token(self, why: str) -> Reply:
        if self.dialect.auth_failure == "body":
            return json_reply(
                {
                    protocol.LEGACY_AUTH_KEY: LEGACY_TOKEN_STATUS,
                    "msg": "access token expired or invalid",
                }
            )
        return json_reply(
            {"status": HTTP_UNAUTHORIZED, "msg": f"Unauthorized: {why}"}, HTTP_UNAUTHORIZED
        )

    def _refuse_signature(self, why: str) -> Reply:
        if self.dialect.auth_failure == "body":
            return json_reply(
                {"status": SIGNATURE_STATUS, "msg": "signature or timestamp check failed"}
            )
        return json_reply(
            {"status": HTTP_UNAUTHORIZED, "msg": f"Unauthorized: {why}"}, HTTP_UNAUTHORIZED
        )

"""Errors of authentication: who is calling could not be established."""

from __future__ import annotations

from typing import Any, Literal

from nextra.kernel.errors import NextraError

__all__ = ("AuthenticationError", "AuthenticationReason", "AuthenticationUnavailable")

AuthenticationReason = Literal[
    "algorithm-not-allowed",
    "bad-signature",
    "expired",
    "malformed",
    "missing-claim",
    "missing-header",
    "not-yet-valid",
    "replayed",
    "stale-timestamp",
    "unauthorized-party",
    "unknown-key",
    "weak-key",
    "wrong-audience",
    "wrong-issuer",
]


class AuthenticationError(NextraError):
    """A credential was refused: the caller is not who it claims to be (HTTP 401).

    Messages say what was wrong in words a person understands and never repeat the
    token, key, signature or secret that was presented.

    Args:
        message: One sentence a person understands.
        reason: A short machine reason, stable for clients and dashboards.
        expected: What the rule asked for, when it is safe to say.
        got: What was found instead, when it is safe to say.
        where: The claim or header at fault, such as ``exp`` or ``svix-timestamp``.
    """

    code = "unauthenticated"

    def __init__(
        self,
        message: str,
        *,
        reason: AuthenticationReason,
        expected: Any = None,
        got: Any = None,
        where: str | None = None,
    ) -> None:
        super().__init__(message, expected=expected, got=got, where=where)
        self.reason: AuthenticationReason = reason

    def fields(self) -> dict[str, Any]:
        """The structured parts of the error, the reason first."""
        return {"reason": self.reason, **super().fields()}


class AuthenticationUnavailable(NextraError):
    """Credentials could not be checked right now, for example the JWKS is down.

    Not a verdict on the credential: the API answers 503 so that clients retry,
    instead of 401, which would sign a legitimate user out.
    """

    code = "authentication-unavailable"

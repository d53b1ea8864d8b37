"""Every API error as an RFC 9457 problem document."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from nextra.api.flows import PreconditionRequired
from nextra.api.identity import Forbidden
from nextra.auth.errors import AuthenticationError, AuthenticationUnavailable
from nextra.domain.flows.validate import FlowInvalid
from nextra.kernel.errors import (
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    EventStoreTimeout,
    EventStoreUnavailable,
    LimitExceeded,
    NextraError,
    NotFoundError,
    PreconditionFailed,
    ProjectionError,
    ValidationError,
)
from nextra.kernel.logging import get_logger

__all__ = ("EXCEPTION_HANDLERS", "problem")

MEDIA_TYPE = "application/problem+json"
log = get_logger("nextra.api")

_STATUS: list[tuple[type[NextraError], int]] = [
    (AuthenticationError, 401),
    (AuthenticationUnavailable, 503),
    (Forbidden, 403),
    (PreconditionRequired, 428),
    (LimitExceeded, 402),
    (PreconditionFailed, 412),
    (ValidationError, 422),
    (NotFoundError, 404),
    (ConcurrencyError, 409),
    (ConflictError, 409),
    (EventStoreTimeout, 504),
    (EventStoreUnavailable, 503),
    (ProjectionError, 503),
    (ConfigurationError, 500),
]


def problem(
    request: Request[Any, Any, Any],
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    **extensions: Any,
) -> Response[dict[str, Any]]:
    body = {
        "type": f"urn:nextra:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **{key: value for key, value in extensions.items() if value is not None},
    }
    return Response(body, status_code=status, media_type=MEDIA_TYPE)


def _nextra_error(request: Request[Any, Any, Any], error: NextraError) -> Response[Any]:
    status = next((code for cls, code in _STATUS if isinstance(error, cls)), 500)
    if status >= 500:
        log.warning("api.request_failed", error=error.message, code=error.code)
    extensions: dict[str, Any] = error.fields()
    if isinstance(error, FlowInvalid):
        # Every error with its line, column, listener and field, and the
        # warnings, so an editor can mark them all at once.
        extensions["errors"] = msgspec.to_builtins(error.report.errors)
        extensions["warnings"] = msgspec.to_builtins(error.report.warnings)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    response = problem(
        request,
        status=status,
        code=error.code,
        title=error.code.replace("-", " ").capitalize(),
        detail=error.message,
        **extensions,
    )
    if headers:
        response.headers.update(headers)
    return response


def _http_error(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    extra = error.extra if isinstance(error.extra, dict | list) else None
    if isinstance(error, ValidationException):
        return problem(
            request,
            status=error.status_code,
            code="invalid-request",
            title="Invalid request",
            detail=error.detail,
            errors=extra,
        )
    return problem(
        request,
        status=error.status_code,
        code=f"http-{error.status_code}",
        title=error.detail,
        detail=error.detail,
    )


def _too_deep(request: Request[Any, Any, Any], error: RecursionError) -> Response[Any]:
    return problem(
        request,
        status=400,
        code="invalid-request",
        title="Invalid request",
        detail="the request body is nested too deeply",
    )


def _unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    log.exception("api.unhandled_error", error_type=type(error).__name__)
    return problem(
        request,
        status=HTTP_500_INTERNAL_SERVER_ERROR,
        code="internal",
        title="Internal error",
        detail="The server failed to answer; the error is logged.",
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    NextraError: _nextra_error,
    HTTPException: _http_error,
    RecursionError: _too_deep,
    Exception: _unexpected,
}

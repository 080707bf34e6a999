"""The service's exception classes and the one table of their HTTP statuses and type names.

Every other list of statuses or error types derives from `STATUS`. Errors cross a Ray handle as
plain data (`to_wire` / `from_wire`), never as pickled exceptions."""

from __future__ import annotations

from typing import Any


class RawInferError(Exception):
    """Base class. `message` must say what to change; it reaches the client, so it never holds
    a secret, a stack trace or an internal address."""

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidRequest(RawInferError):
    """The client's request is wrong: addressing, inputs, parameters, media."""


class Unauthenticated(RawInferError):
    """Missing or unknown API key."""


class Forbidden(RawInferError):
    """The key may not do this (namespace, target)."""


class NotFound(RawInferError):
    """Unknown namespace (or other addressed resource)."""


class MethodNotAllowed(RawInferError):
    """The route exists, not for this HTTP method."""


class PayloadTooLarge(RawInferError):
    """Body or media over its size cap."""


class RateLimited(RawInferError):
    def __init__(
        self, message: str, retry_after_s: float = 1.0, details: dict[str, Any] | None = None
    ):
        super().__init__(message, details)
        self.retry_after_s = retry_after_s


class InferenceFailed(RawInferError):
    """A model failed while running a valid request."""


class PluginFailed(InferenceFailed):
    """A plugin raised during inference or returned outputs that fail its Outputs model; the
    message names the plugin (name@version)."""


class ProviderError(RawInferError):
    """A cloud provider answered with an error; its message is kept in details."""


class Unavailable(RawInferError):
    """The backend is not ready, not configured, or overloaded."""


class Overloaded(Unavailable):
    """Every replica is busy and the deployment's queue is full: retry after `retry_after_s`."""

    def __init__(
        self, message: str, retry_after_s: float = 1.0, details: dict[str, Any] | None = None
    ):
        super().__init__(message, details)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(RawInferError):
    """The backend or provider took longer than the request timeout."""


# The one status table: class -> (HTTP status, the error body's `type`).
STATUS: dict[type[RawInferError], tuple[int, str, str]] = {
    InvalidRequest: (400, "BadRequestError", "invalid_request_error"),
    Unauthenticated: (401, "AuthenticationError", "authentication_error"),
    Forbidden: (403, "PermissionDeniedError", "permission_error"),
    NotFound: (404, "NotFoundError", "not_found_error"),
    MethodNotAllowed: (405, "MethodNotAllowedError", "invalid_request_error"),
    PayloadTooLarge: (413, "PayloadTooLargeError", "invalid_request_error"),
    RateLimited: (429, "RateLimitError", "rate_limit_error"),
    InferenceFailed: (500, "InternalServerError", "api_error"),
    ProviderError: (502, "BadGatewayError", "api_error"),
    Unavailable: (503, "ServiceUnavailableError", "api_error"),
    DeadlineExceeded: (504, "GatewayTimeoutError", "api_error"),
}
ERROR_TYPES: dict[int, str] = {status: name for status, name, _ in STATUS.values()}
OPENAI_TYPES: dict[int, str] = {status: name for status, _, name in STATUS.values()}


def error_type(status: int) -> str:
    """The error body's `type` for a status (one the table lacks: the 4xx or 5xx default)."""
    return ERROR_TYPES.get(status) or ERROR_TYPES[400 if status < 500 else 500]


def status_of(exc: RawInferError) -> tuple[int, str]:
    """(status, type) of an exception: its class's entry, or its nearest listed base's."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls][:2]
    return STATUS[InferenceFailed][:2]


_BY_NAME: dict[str, type[RawInferError]] = {
    c.__name__: c
    for c in (
        RawInferError,
        InvalidRequest,
        Unauthenticated,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        RateLimited,
        Overloaded,
        InferenceFailed,
        PluginFailed,
        ProviderError,
        Unavailable,
        DeadlineExceeded,
    )
}


def to_wire(exc: RawInferError) -> dict[str, Any]:
    """An error as plain data, to return across a deployment handle."""
    wire = {"kind": type(exc).__name__, "message": exc.message, "details": exc.details}
    if isinstance(exc, (RateLimited, Overloaded)):
        wire["retry_after_s"] = exc.retry_after_s
    return {"error": wire}


def from_wire(payload: dict[str, Any]) -> RawInferError:
    """The exception that `to_wire` described. Unknown kinds become InferenceFailed."""
    err = payload["error"]
    cls = _BY_NAME.get(err.get("kind", ""), InferenceFailed)
    if cls in (RateLimited, Overloaded):
        return cls(err["message"], err.get("retry_after_s", 1.0), err.get("details"))
    return cls(err.get("message", "inference failed"), err.get("details"))


def is_wire_error(payload: Any) -> bool:
    return isinstance(payload, dict) and "error" in payload and len(payload) == 1
